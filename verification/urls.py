"""Evidence export routes (researchers)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
