"""Local stand-ins for APNs and FCM, for tests, staging and the push benchmark.

They speak the real wire protocols (HTTP/2 for APNs, FCM HTTP v1 plus a Google OAuth
token endpoint) so that the real aioapns and pyfcm clients can be pointed at them.
"""

from mpaas.push.standins.apns import ApnsRequestRecord, ApnsStandin
from mpaas.push.standins.faults import Fault, FaultPlan
from mpaas.push.standins.fcm import FcmRequestRecord, FcmStandin, write_service_account

__all__ = [
    "ApnsRequestRecord",
    "ApnsStandin",
    "Fault",
    "FaultPlan",
    "FcmRequestRecord",
    "FcmStandin",
    "write_service_account",
]
