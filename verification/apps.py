"""App config for answers, agreement, review, evidence sets and packages."""

from django.apps import AppConfig


class VerificationConfig(AppConfig):
    name = "verification"
    verbose_name = "Answers, consensus and evidence"
    default_auto_field = "django.db.models.BigAutoField"
