"""Django settings, derived from Mailcloak's own settings table (mailcloak.settings).

Nothing here reads the environment directly: change behaviour through MAILCLOAK_* variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url

from mailcloak import settings as mailcloak_settings
from mailcloak.observability.logsetup import logging_config

CONFIG = mailcloak_settings.get()
DATA_DIR = CONFIG.data_path

SECRET_KEY = CONFIG.secret_key
DEBUG = False
ALLOWED_HOSTS = ["*"] if not CONFIG.is_production else [
    host for host in {CONFIG.public_url.split("://", 1)[-1].split("/")[0].split(":")[0]} if host
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "mailcloak.accounts",
    "mailcloak.aliases",
    "mailcloak.quarantine",
    "mailcloak.outbox",
    "mailcloak.mail",
    "mailcloak.spamdata",
]

MIDDLEWARE = [
    # Answers mta-sts.DOMAIN hosts, which ALLOWED_HOSTS cannot list (users' domains change).
    "mailcloak.project.mta_sts.MtaStsPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "mailcloak.project.middleware.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "mailcloak.project.urls"
WSGI_APPLICATION = "mailcloak.project.wsgi.application"
ASGI_APPLICATION = "mailcloak.project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).resolve().parent.parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "mailcloak.project.context.mailcloak",
            ],
        },
    },
]


def _database(url: str) -> dict[str, Any]:
    db: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=60))
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db["ENGINE"] = "mailcloak.project.sqlite"  # writers take turns (see its docstring)
        Path(db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        db["CONN_MAX_AGE"] = None
        db["OPTIONS"] = {
            # WAL lets the web app read while the mail server writes; FULL sync makes a
            # commit durable before SMTP answers 250; IMMEDIATE avoids lock-upgrade deadlocks.
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
            ),
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
        db["TEST"] = {"NAME": str(Path(db["NAME"]).with_name("test-mailcloak.sqlite3"))}
    else:
        db["CONN_HEALTH_CHECKS"] = True
    return db


DATABASES = {"default": _database(CONFIG.database_url)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache holds rate-limit counters (logins, signups, verification mails): in the database, so
# the limits hold across every process and every node that shares it.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "mailcloak_cache",
    },
}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# django-allauth: email is the login; the account email is the user's first mailbox and
# must be verified before anything is forwarded to it.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_ADAPTER = "mailcloak.accounts.adapter.AccountAdapter"
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "confirm_email": "1/3m/key",
}
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Mailcloak] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if CONFIG.is_production else "http"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Mailcloak"
LOGIN_REDIRECT_URL = "/aliases/"
LOGIN_URL = "/accounts/login/"

# System mail (verification, password reset) goes through Mailcloak's own outbound path.
EMAIL_BACKEND = "mailcloak.outbox.backend.OutboundEmailBackend"
DEFAULT_FROM_EMAIL = f"Mailcloak <noreply@{CONFIG.primary_domain}>"
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves from it after collectstatic
STATICFILES_DIRS = [Path(__file__).resolve().parent.parent / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = CONFIG.is_production
CSRF_COOKIE_SECURE = CONFIG.is_production
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if CONFIG.is_production:
    CSRF_TRUSTED_ORIGINS = [CONFIG.public_url]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 31536000
    SESSION_COOKIE_AGE = 14 * 86400
else:
    CSRF_TRUSTED_ORIGINS = [CONFIG.public_url]

LOGGING = logging_config(CONFIG)  # key=value or JSON lines, addresses redacted
