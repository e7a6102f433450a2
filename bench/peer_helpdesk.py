"""django-helpdesk's own IMAP import (`manage.py get_email`) on a mailbox this benchmark
filled: the peer that bench/ingest.py compares intake with, measured in the same run.

Runs inside the peer's own virtualenv (see bench/peer.py), never in intake's: it imports
Django and django-helpdesk only.

    PEER_PYTHON bench/peer_helpdesk.py WORKDIR IMAP_PORT USER PASSWORD SMTP_PORT

A throw-away Django project in WORKDIR (SQLite, the SMTP server given for outgoing mail),
one helpdesk queue reading USER's INBOX over plain IMAP, the e-mail templates helpdesk
ships (its acknowledgement to the submitter among them). Prints one JSON line: the
seconds and CPU seconds `get_email` took, and the tickets it made.
"""

from __future__ import annotations

import json
import os
import sys
import time

SETTINGS = '''
SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                  "django.contrib.sites", "django.contrib.messages", "django.contrib.humanize",
                  "rest_framework", "account", "pinax.invitations", "pinax.teams", "reversion", "helpdesk"]
SITE_ID = 1
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {database!r}}}}}
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = {smtp_port}
DEFAULT_FROM_EMAIL = "blfi@example.org"
MEDIA_ROOT = {media!r}
ROOT_URLCONF = "peer_urls"
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "OPTIONS": {{"context_processors": ["django.template.context_processors.request",
                                                 "django.contrib.auth.context_processors.auth",
                                                 "django.contrib.messages.context_processors.messages"]}}}}]
MIDDLEWARE = []
LOGGING = {{"version": 1, "disable_existing_loggers": True}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
'''
URLS = 'from django.urls import include, path\nurlpatterns = [path("helpdesk/", include("helpdesk.urls", namespace="helpdesk"))]\n'


def main() -> int:
    work, imap_port, user, password, smtp_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "peer_settings.py"), "w", encoding="utf-8") as out:
        out.write(SETTINGS.format(database=os.path.join(work, "peer.db"), smtp_port=smtp_port,
                                  media=os.path.join(work, "media")))
    with open(os.path.join(work, "peer_urls.py"), "w", encoding="utf-8") as out:
        out.write(URLS)
    sys.path.insert(0, work)
    os.environ["DJANGO_SETTINGS_MODULE"] = "peer_settings"

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("loaddata", "emailtemplate.json", verbosity=0)
    from helpdesk.models import Queue, Ticket

    Queue.objects.create(title="SWIG", slug="swig", email_address="swig@example.org", allow_email_submission=True,
                         email_box_type="imap", email_box_host="127.0.0.1", email_box_port=imap_port,
                         email_box_ssl=False, email_box_user=user, email_box_pass=password,
                         email_box_imap_folder="INBOX", email_box_interval=0)
    start, cpu = time.perf_counter(), time.process_time()
    call_command("get_email")
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                      "tickets": Ticket.objects.count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
