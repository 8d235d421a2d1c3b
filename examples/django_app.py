"""Django (ASGI) in one file: a sync and an async view, an included URLconf, a failing view."""

import asyncio
import logging

import django
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path

log = logging.getLogger("shop")

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="example-only",  # a demo app, never deployed
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    INSTALLED_APPS=[],
    APPEND_SLASH=False,
    USE_TZ=True,
)


# A sync view: Django runs it in a worker thread (asgiref), with the request's context.
def item(request: HttpRequest, item_id: int) -> JsonResponse:
    log.info("looking up item %s", item_id)
    return JsonResponse({"id": item_id})


async def item_async(request: HttpRequest, item_id: int) -> JsonResponse:
    log.info("looking up item %s", item_id)
    await asyncio.sleep(0)
    return JsonResponse({"id": item_id})


def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


async def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


v1 = [path("items/<int:item_id>", item_async)]
urlpatterns = [
    path("items/<int:item_id>", item),
    path("fail", fail),
    path("healthz", health),
    path("v1/", include(v1)),
]

django.setup()
app = get_asgi_application()
