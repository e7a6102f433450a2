"""PLACEHOLDER until crypto lands."""
class RawCipher:
    enabled = False

    @classmethod
    def from_settings(cls, settings):
        return cls()

    def seal(self, data):
        return data, False

    def open(self, data, encrypted):
        return data
