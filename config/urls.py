"""URL routes: pages, the JSON API under /api/v1/, its schema, admin and media.

Each area owns its own URL module: volunteer pages (frontend.urls), the researcher workspace
(frontend.researcher_urls), evidence exports (verification.urls) and operations (config.ops).
"""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from tasks import api as task_api
from verification import api as verification_api

api_v1 = [
    path("campaigns/", task_api.CampaignListView.as_view(), name="api-campaigns"),
    path("campaigns/<slug:slug>/next-task", task_api.NextTaskView.as_view(), name="api-next-task"),
    path(
        "campaigns/<slug:slug>/consensus", verification_api.ConsensusListView.as_view(), name="api-consensus"
    ),
    path("tasks/<int:task_id>", task_api.TaskDetailView.as_view(), name="api-task"),
    path("tasks/<int:task_id>/answers", verification_api.AnswerCreateView.as_view(), name="api-answers"),
    path("tasks/<int:task_id>/skip", task_api.TaskSkipView.as_view(), name="api-task-skip"),
    path("tasks/<int:task_id>/lease", task_api.TaskLeaseView.as_view(), name="api-task-lease"),
]

handler404 = "config.api.page_not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/", include(api_v1)),
    path("researcher/", include("frontend.researcher_urls")),
    path("researcher/", include("verification.urls")),
    path("", include("config.ops")),
    path("", include("frontend.urls")),
]
