"""Public URLs of task media, for the API and the pages."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import default_storage

from tasks.models import Task


def media_url(name: str | None) -> str | None:
    return default_storage.url(name) if name else None


def task_media_urls(task: Task) -> dict[str, Any]:
    urls: dict[str, Any] = {}
    for key, value in (task.media or {}).items():
        if isinstance(value, str):
            urls[key] = media_url(value)
        elif isinstance(value, list):
            urls[key] = [
                {**item, "url": media_url(item.get("name"))} if isinstance(item, dict) else media_url(item)
                for item in value
            ]
        elif isinstance(value, dict):
            urls[key] = value
    return urls
