"""Evidence export routes (researchers), mounted under /researcher/."""

from django.urls import URLPattern, path

from verification import views

urlpatterns: list[URLPattern] = [
    path("<slug:slug>/exports/", views.export_list, name="export-list"),
    path("<slug:slug>/exports/jobs/<int:job_id>/", views.export_job, name="export-job"),
    path("<slug:slug>/exports/<int:export_id>/download", views.export_download, name="export-download"),
]
