"""A gateway with a tokens file: one token per role, a second trainer, and an auditor (read+all)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlgate.tokens import Role, new_token, tokens_line
from tests.support.system import RunningGateway, gateway_settings, running_gateway

__all__ = ["HOLDERS", "Authed", "start_authed", "write_tokens"]

#: name -> (role, sees every job)
HOLDERS = {
    "reader": (Role.READ, False),
    "predictor": (Role.PREDICT, False),
    "alice": (Role.TRAIN, False),
    "bob": (Role.TRAIN, False),
    "auditor": (Role.READ, True),
    "ops": (Role.ADMIN, False),
}


@dataclass
class Authed:
    gateway: RunningGateway
    tokens_file: Path
    tokens: dict[str, str]

    @property
    def address(self) -> str:
        return self.gateway.address


def write_tokens(path: Path, holders: dict[str, tuple[Role, bool]]) -> dict[str, str]:
    tokens = {name: new_token() for name in holders}
    lines = [
        tokens_line(tokens[name], role, name, sees_all_jobs=all_jobs)
        for name, (role, all_jobs) in holders.items()
    ]
    path.write_text("# test tokens\n" + "\n".join(lines) + "\n")
    return tokens


def start_authed(tmp_path: Path, *, embedded_workers: bool) -> Authed:
    tokens_file = tmp_path / "tokens.txt"
    tokens = write_tokens(tokens_file, HOLDERS)
    settings = gateway_settings(tmp_path / "data", auth_tokens_file=str(tokens_file))
    return Authed(running_gateway(settings, embedded_workers=embedded_workers), tokens_file, tokens)
