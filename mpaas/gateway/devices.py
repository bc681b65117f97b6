"""The gateway's own operation ``mgs.device.register``: a device registers its P-256 key once.

At first launch the app makes a key pair in the Keychain (iOS, Secure Enclave) or the
Keystore (Android) and calls this operation signed with the app key (HMAC), sending
the public key and a *proof*: the new key's signature over::

    MGS1-DEVICE-KEY\\n<app id>\\n<device id>\\n<nonce of this request>

which shows the caller holds the private key, bound to this one request. From then on
the device signs with ECDSA (``kid`` = the returned fingerprint) and HMAC calls from it
are refused. A device id's key is never replaced; a new install makes a new device id.
"""

from __future__ import annotations

import base64
import binascii

from pydantic import BaseModel, ConfigDict, Field

from mpaas.gateway.codes import GatewayError, ResultCode
from mpaas.gateway.keys import KeyStore
from mpaas.gateway.operation import Call, OperationSpec
from mpaas.gateway.signing import load_device_key, verify_ecdsa

NAME = "mgs.device.register"


class DeviceKeyInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_key: str = Field(max_length=256, description="SubjectPublicKeyInfo DER, standard base64")
    proof: str = Field(max_length=200, description="signature by the new key over the proof string")


class DeviceKeyOutput(BaseModel):
    kid: str


def proof_string(app: str, device: str, nonce: str) -> bytes:
    return f"MGS1-DEVICE-KEY\n{app}\n{device}\n{nonce}".encode()


def device_register_operation(keys: KeyStore) -> OperationSpec:
    async def register(call: Call, params: DeviceKeyInput) -> DeviceKeyOutput:
        if call.device_kid is not None:
            raise GatewayError(ResultCode.ACCESS_DENIED, "this device already has a key")
        try:
            der = base64.b64decode(params.public_key, validate=True)
            proof = base64.b64decode(params.proof, validate=True)
            key = load_device_key(der)
        except (binascii.Error, ValueError):
            raise GatewayError(
                ResultCode.INVALID_PARAMETERS, "public_key must be a base64 P-256 SubjectPublicKeyInfo"
            ) from None
        if not verify_ecdsa(key, proof_string(call.app, call.device, call.nonce), proof):
            raise GatewayError(ResultCode.SIGNATURE_INVALID, "the proof does not verify with this key")
        found = await keys.register_device(call.app, call.device, der)
        return DeviceKeyOutput(kid=found.kid)

    return OperationSpec(
        name=NAME,
        version=1,
        input=DeviceKeyInput,
        output=DeviceKeyOutput,
        handler=register,
        session_required=False,
        kind="system",
        summary="Register this device's P-256 key (once per device id)",
    )
