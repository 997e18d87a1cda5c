"""Researcher workspace routes: campaign set-up, dashboards, map, review, evidence sets."""

from django.urls import path

from frontend import views

urlpatterns = [
    path("", views.researcher_home, name="researcher-home"),
    path("<slug:slug>/", views.researcher_campaign, name="researcher-campaign"),
]
