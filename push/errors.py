"""Errors of the push domain; each pairs with an :mod:`mpaas.errors` base for its HTTP status."""

from __future__ import annotations

from mpaas.errors import MpaasError, NotFound, Unauthorized, ValidationError


class PushError(MpaasError):
    """Base of the push domain; defines no status, so a paired base decides it."""


class InvalidPushRequest(PushError, ValidationError):
    code = "invalid_push_request"


class InvalidDeploymentKey(PushError, Unauthorized):
    code = "invalid_deployment_key"


class DeviceAuthFailed(PushError, Unauthorized):
    """The device id and secret do not match a registered, enabled device."""

    code = "device_auth_failed"


class DeviceNotFound(PushError, NotFound):
    code = "device_not_found"


class MessageNotFound(PushError, NotFound):
    code = "push_message_not_found"


class DeliveryNotFound(PushError, NotFound):
    code = "push_delivery_not_found"
