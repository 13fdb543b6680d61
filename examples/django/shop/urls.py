import os
import threading

from django.http import HttpRequest, JsonResponse
from django.urls import path

from xpevents.integrations.django import client


def checkout(request: HttpRequest) -> JsonResponse:
    user = request.GET["user"]
    color = client().activate("checkout_button_color", user)
    client().track("purchase", user, event_tags={"revenue": 4200})
    return JsonResponse(
        {
            "user": user,
            "button": color,
            "revision": client().config.revision if client().config else None,
            "pid": os.getpid(),
            "thread": threading.get_ident(),
        }
    )


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [path("checkout", checkout), path("health", health)]
