"""Settings for Corroborate, read from the environment with embedded laptop defaults."""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CORROBORATE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DEBUG", False)
PRODUCTION = env_bool("CORROBORATE_PRODUCTION", False)


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise RuntimeError("SECRET_KEY must be set in production (CORROBORATE_PRODUCTION=1)")
    # A development key kept under var/ so sessions survive restarts of the laptop shape.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(64))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_q",
    "tasks",
    "verification",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.SecurityHeadersMiddleware",
    "config.resilience.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite under var/ by default; DATABASE_URL (e.g. postgres://...) for production and CI.
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'corroborate.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")))
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so concurrent writers queue instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# A connection broken by a database restart is noticed and replaced before the next request uses it.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Short OLTP queries: JIT compilation costs more (tens of ms) than it saves on the serving queries.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
    # Server-side binding lets psycopg prepare the statements a connection runs again and again (the
    # volunteer hot path's), so PostgreSQL parses each of them once per connection, not per call, and
    # reuses a generic plan where it costs no more than a custom one (plan_cache_mode=auto). The
    # statements whose plans depend on their values and on how the tables have grown are sent unprepared,
    # planned for each call (config/fastsql.py, `run(custom_plan=True)`): a generic plan cached while the
    # tables were small once kept scanning them whole as they grew. DB_PLAN_CACHE_MODE=force_custom_plan
    # re-plans every statement (load benchmark: 3.5 instead of 2.9-3.2 ms of PostgreSQL CPU per answered
    # and leased task; perf put planning at a third of PostgreSQL's CPU).
    if env_bool("DB_SERVER_SIDE_BINDING", True):
        DATABASES["default"]["OPTIONS"].update(server_side_binding=True, prepare_threshold=5)
        plan_cache_mode = os.environ.get("DB_PLAN_CACHE_MODE", "auto")
        DATABASES["default"]["OPTIONS"]["options"] += f" -c plan_cache_mode={plan_cache_mode}"
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME") or None}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Background jobs: django-q2 with Redis when REDIS_URL is set, else the ORM broker.
REDIS_URL = os.environ.get("REDIS_URL", "")
Q_CLUSTER: dict[str, object] = {
    "name": "corroborate",
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": int(os.environ.get("Q_TIMEOUT", "3600")),
    "retry": int(os.environ.get("Q_RETRY", "3700")),
    "max_attempts": 2,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.5,
    "label": "Jobs",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
if env_bool("Q_SYNC", False):
    Q_CLUSTER["sync"] = True

# Storage: files under var/media by default, S3 through django-storages when S3_BUCKET is set.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# The laptop shape serves static files straight from the apps; production runs collectstatic first.
WHITENOISE_USE_FINDERS = not PRODUCTION
STATIC_URL = "/static/"
# Leaflet is served from the static files that the django-leaflet package ships (no CDN). Only its static
# folder is used: the app itself imports GeoDjango, which needs a system GDAL we do not require.
_leaflet_spec = importlib.util.find_spec("leaflet")
STATICFILES_DIRS = (
    [("vendor", Path(_leaflet_spec.origin).parent / "static")]
    if _leaflet_spec and _leaflet_spec.origin
    else []
)
S3_BUCKET = os.environ.get("S3_BUCKET", "")
S3_ENDPOINT_URL = os.environ.get("S3_ENDPOINT_URL") or None
S3_REGION = os.environ.get("S3_REGION", "us-east-1")
if S3_BUCKET:
    _default_storage: dict[str, object] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": S3_ENDPOINT_URL,
            "region_name": S3_REGION,
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
            "location": os.environ.get("S3_MEDIA_PREFIX", "media"),
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
FILE_UPLOAD_TEMP_DIR = None
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Pillow refuses decompression bombs (an image claiming more pixels than this raises an error, not a warning);
# GDAL's cache is bounded so a hostile raster cannot exhaust memory.
import PIL.Image  # noqa: E402

PIL.Image.MAX_IMAGE_PIXELS = int(os.environ.get("CORROBORATE_MAX_IMAGE_PIXELS", str(64 * 1024 * 1024)))
os.environ.setdefault("GDAL_CACHEMAX", "256")
os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
CORROBORATE_MAX_UPLOAD_BYTES = int(os.environ.get("CORROBORATE_MAX_UPLOAD_BYTES", str(8 * 1024**3)))
EXPORT_ROOT = Path(os.environ.get("EXPORT_ROOT", VAR_DIR / "exports"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "frontend" / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["config.authentication.CsrfSessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    # A person answers at most about one task a second, in bursts; scripts go faster and for longer.
    "DEFAULT_THROTTLE_RATES": {
        "answers_burst": os.environ.get("RATE_ANSWERS_BURST", "10/10s"),
        "answers": os.environ.get("RATE_ANSWERS", "60/min"),
        "next_task_burst": os.environ.get("RATE_NEXT_TASK_BURST", "20/10s"),
        "next_task": os.environ.get("RATE_NEXT_TASK", "120/min"),
        "newcomers": os.environ.get("RATE_NEWCOMERS", "600/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Corroborate API",
    "DESCRIPTION": "Crowdsourced evidence micro-tasking: campaigns, tasks, answers and consensus.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}
CORROBORATE_RATE_LIMITS = env_bool("CORROBORATE_RATE_LIMITS", True)
# A newcomer refused by the site-wide RATE_NEWCOMERS budget may still come in by proving some work: a SHA-256
# with this many leading zero bits (2^bits hashes on average; 0: no proofs, refused newcomers wait for the
# window), on a challenge good for this many seconds (config/proof_of_work.py).
NEWCOMER_PROOF_BITS = int(os.environ.get("NEWCOMER_PROOF_BITS", "16"))
NEWCOMER_PROOF_SECONDS = int(os.environ.get("NEWCOMER_PROOF_SECONDS", "300"))
# PostgreSQL: each process chains a campaign's committed ledger records after a commit at most this often
# (seconds); in between they wait, committed, for the next chainer, a read of the ledger or the every-minute
# job (verification/services.py, _chain_after_commit). 0: after every commit.
LEDGER_CHAIN_INTERVAL = float(os.environ.get("LEDGER_CHAIN_INTERVAL", "0.2"))

CACHES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "corroborate"}
}
if REDIS_URL:
    CACHES["default"] = {
        "BACKEND": "config.cache.ResilientRedisCache",
        "LOCATION": REDIS_URL,
        # Generous enough for a loaded machine; past them the cache fails open (see config/cache.py).
        "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 2.0},
    }

# Sessions are read on every volunteer request: with Redis they are read from the cache (written through).
SESSION_ENGINE = os.environ.get(
    "SESSION_ENGINE",
    # Django's database-backed stores (cached through Redis when there is one), creating a session in one
    # round trip (config/sessions.py).
    "config.sessions",
)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 60 * 60 * 24 * 365
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # SECURE_COOKIES=0 only for plain-HTTP measurements on one machine (benchmarks/volunteer_load.py).
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Logs: structured (one JSON object a line), never carrying IP addresses.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "config.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    "loggers": {
        "corroborate": {"level": os.environ.get("LOG_LEVEL", "INFO"), "propagate": True},
        "django.server": {"level": "ERROR"},
    },
}
