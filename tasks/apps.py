"""App config for campaigns, sources and micro-tasks."""

from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Campaigns and tasks"
    default_auto_field = "django.db.models.BigAutoField"
