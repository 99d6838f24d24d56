"""Checking what a debug API caller sent, and answering without echoing it back whole.

A status message travels in a trailer, and gRPC clients refuse metadata past a few kilobytes (8 KiB by
default): an error that quoted a 1 MB name would reach the caller as a transport failure instead of the
error. Names are therefore checked as Kubernetes checks them, and every message quotes at most a short
prefix of what it was given."""

from __future__ import annotations

import re

import grpc

# Kubernetes' own rules (k8s.io/apimachinery/pkg/util/validation): a namespace is a DNS-1123 label, object
# names (pods, PodGroups, Queues, Topologies) are DNS-1123 subdomains
LABEL_MAX, SUBDOMAIN_MAX = 63, 253
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
LABEL = re.compile(_LABEL)
SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
ECHO_MAX = 64  # characters of a caller's value quoted in a message
DETAILS_MAX = 1000  # UTF-8 bytes of a status message (a safety net: messages quote short prefixes anyway)


class Abort(Exception):
    """Ends the call with this status; raised anywhere below an RPC method."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def echo(value: str) -> str:
    """`value` quoted for a message: whole when short, else a prefix and its length."""
    if len(value) <= ECHO_MAX:
        return repr(value)
    return f"{value[:ECHO_MAX]!r}... ({len(value)} characters)"


def clip(message: str) -> str:
    """At most DETAILS_MAX bytes of UTF-8, cut on a character boundary."""
    raw = message.encode()
    if len(raw) <= DETAILS_MAX:
        return message
    return raw[: DETAILS_MAX - 3].decode(errors="ignore") + "..."


def name_problem(value: str, what: str, label: bool = False) -> str | None:
    """Why `value` cannot be a Kubernetes name (a namespace with `label`), or None if it can."""
    limit, pattern = (LABEL_MAX, LABEL) if label else (SUBDOMAIN_MAX, SUBDOMAIN)
    if len(value) > limit:
        return f"{what} {echo(value)} is longer than {limit} characters, the Kubernetes limit"
    if not pattern.fullmatch(value):
        rule = "a DNS-1123 label" if label else "a DNS-1123 subdomain"
        return (
            f"{what} {echo(value)} is not a valid Kubernetes name ({rule}: lower-case letters, digits, '-'"
            + ("" if label else ", '.'")
            + ", starting and ending with a letter or digit)"
        )
    return None


def check_name(value: str, what: str, *, required: bool = False, namespace: bool = False) -> None:
    """Raises Abort(INVALID_ARGUMENT) unless `value` is a valid name (or empty, when not `required`)."""
    if not value:
        if required:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{what} is required")
        return
    problem = name_problem(value, what, label=namespace)
    if problem is not None:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
