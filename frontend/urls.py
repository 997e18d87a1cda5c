"""Page routes."""

from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from frontend import views

urlpatterns = [
    path("", views.home, name="home"),
    path("campaigns/<slug:slug>/", views.campaign_detail, name="campaign"),
    path("campaigns/<slug:slug>/classify/", views.classify, name="classify"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/register/", views.register, name="register"),
    re_path(r"^media/(?P<path>.+)$", views.media, name="media"),
]
