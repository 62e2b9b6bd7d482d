"""The REST binding admits callers as the gRPC port does: the same tokens and roles, the same
certificate and client certificates; and a stopping gateway closes its connections."""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path

import grpc
import pytest

from mlgate.v1 import jobs_pb2
from tests.support.authed import HOLDERS, write_tokens
from tests.support.certs import Authority
from tests.support.gateway_calls import diabetes_request, events_of, jobs
from tests.support.rest_client import RestClient, readme_infer
from tests.support.system import gateway_settings, running_gateway


def test_tokens_and_roles_are_the_grpc_methods(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt", HOLDERS)
    settings = gateway_settings(
        tmp_path / "data", http_port=0, auth_tokens_file=str(tmp_path / "tokens.txt")
    )
    gateway = running_gateway(settings)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stream = jobs(channel).Train(
                diabetes_request(model_name="diabetes-rf"),
                metadata=(("authorization", f"Bearer {tokens['alice']}"),),
                timeout=120,
            )
            assert events_of(stream)[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
        port = gateway.gateway.http_port
        assert port is not None
        infer = "/v2/models/diabetes-rf/infer"
        with RestClient(port) as anonymous:
            refused = anonymous.post(infer, readme_infer())
            assert refused.status == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert (
                "this gateway needs a token: send 'authorization: Bearer <token>'"
                in (refused.body["error"])
            )
            # As gRPC's ServerLive: the protocol's health needs a token (the gRPC health
            # service is the one orchestrators call without).
            assert anonymous.get("/v2/health/live").status == 401
        with RestClient(port, token="mlg_not-a-token") as stranger:
            unknown = stranger.post(infer, readme_infer())
            assert unknown.status == 401 and "does not know that token" in unknown.body["error"]
        with RestClient(port, token=tokens["reader"]) as reader:
            assert reader.get("/v2/models/diabetes-rf").status == 200
            assert reader.get("/v2/health/ready").status == 200
            denied = reader.post(infer, readme_infer())
            assert denied.status == 403
            assert denied.body["error"] == (
                f"POST {infer} needs the predict role; token 'reader' has read"
            )
        with RestClient(port, token=tokens["predictor"]) as predictor:
            answer = predictor.post(infer, readme_infer())
            assert answer.status == 200 and answer.body["outputs"][0]["data"] == [208.6445780005619]
    finally:
        gateway.stop()
    assert tokens["reader"] not in (tmp_path / "tokens.txt").read_text()


def test_tls_with_the_gateways_certificate_and_client_certificates(tmp_path: Path) -> None:
    ca = Authority(tmp_path / "ca")
    server, client = ca.issue("server", server=True), ca.issue("client", server=False)
    settings = gateway_settings(
        tmp_path / "data",
        http_port=0,
        tls_cert=str(server.cert),
        tls_key=str(server.key),
        tls_client_ca=str(ca.cert),
    )
    gateway = running_gateway(settings)
    try:
        port = gateway.gateway.http_port
        assert port is not None
        trusted = ssl.create_default_context(cafile=str(ca.cert))
        trusted.load_cert_chain(str(client.cert), str(client.key))
        with RestClient(port, context=trusted) as over_tls:
            assert over_tls.get("/v2/health/live").body == {"live": True}
        anonymous = ssl.create_default_context(cafile=str(ca.cert))
        with (
            pytest.raises((ssl.SSLError, ConnectionError)),
            RestClient(port, context=anonymous) as no_certificate,
        ):
            no_certificate.get("/v2/health/live")
        with (
            pytest.raises((http.client.HTTPException, ConnectionError)),
            RestClient(port) as plaintext,
        ):
            plaintext.get("/v2/health/live")
    finally:
        gateway.stop()
