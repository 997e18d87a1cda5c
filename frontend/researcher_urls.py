"""Researcher workspace routes: campaign set-up, dashboards, map, review, evidence sets."""

from django.urls import path

from frontend import views_researcher as views

urlpatterns = [
    path("", views.researcher_home, name="researcher-home"),
    path("new/", views.campaign_new, name="researcher-campaign-new"),
    path("<slug:slug>/", views.researcher_campaign, name="researcher-campaign"),
    path("<slug:slug>/settings/", views.campaign_settings, name="researcher-settings"),
    path("<slug:slug>/members/", views.campaign_members, name="researcher-members"),
    path("<slug:slug>/sources/", views.campaign_sources, name="researcher-sources"),
    path("<slug:slug>/jobs/<int:job_id>.json", views.job_status, name="researcher-job"),
    path("<slug:slug>/dashboard/", views.dashboard, name="researcher-dashboard"),
    path("<slug:slug>/volunteers/block", views.volunteer_block, name="researcher-volunteer-block"),
    path("<slug:slug>/map/", views.campaign_map, name="researcher-map"),
    path("<slug:slug>/map.geojson", views.map_data, name="researcher-map-data"),
    path("<slug:slug>/review/", views.review_queue, name="researcher-review"),
    path("<slug:slug>/tasks/<int:task_id>/", views.task_detail, name="researcher-task"),
    path("<slug:slug>/tasks/<int:task_id>/decide", views.task_decide, name="researcher-task-decide"),
    path("<slug:slug>/tasks/<int:task_id>/gold", views.task_gold, name="researcher-task-gold"),
    path("<slug:slug>/gold/", views.gold_import, name="researcher-gold"),
    path("<slug:slug>/audit/", views.audit, name="researcher-audit"),
    path("<slug:slug>/audit/draw", views.audit_draw, name="researcher-audit-draw"),
    path("<slug:slug>/audit/<int:task_id>/", views.audit_item, name="researcher-audit-item"),
    path("<slug:slug>/evidence/", views.evidence_list, name="researcher-evidence-list"),
    path("<slug:slug>/evidence/<int:set_id>/", views.evidence_detail, name="researcher-evidence"),
    path("<slug:slug>/promote/", views.campaign_promote, name="researcher-promote"),
]
