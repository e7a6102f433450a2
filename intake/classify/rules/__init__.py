"""One classification rule per module; the order lives in intake/classify/__init__.py."""
