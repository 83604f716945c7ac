"""Storage options of the config: how objects are written (class, encryption, lock, tags)
and the ``delete`` modes of an account, validated like the rest of the configuration."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ObjectLockConfig(_Frozen):
    """S3 Object Lock retention given to raw messages and attachments when they are created."""

    mode: Literal["governance", "compliance"] = Field(
        description="compliance: nobody can delete before the date; governance: only with bypass"
    )
    days: int = Field(ge=1, le=36500, description="retention from the PUT, days")


class StorageOptions(_Frozen):
    """How objects are written (S3 only): defaults in ``storage``, per account in
    ``accounts[].storage_options`` (only the keys given there override)."""

    storage_class: str | None = Field(
        default=None, pattern=r"^[A-Z0-9_]{1,64}$",
        description="S3 storage class of every object (STANDARD_IA, GLACIER_IR, ...)",
    )  # fmt: skip
    sse: Literal["none", "s3", "kms"] = Field(
        default="none", description="server-side encryption: SSE-S3 (AES256) or SSE-KMS"
    )
    kms_key_id: str | None = Field(
        default=None, min_length=1, max_length=2048, description="KMS key id or ARN (sse: kms)"
    )
    object_lock: ObjectLockConfig | None = Field(
        default=None, description="Object Lock retention of raw messages and attachments"
    )
    legal_hold: bool = Field(default=False, description="legal hold ON for raw and attachments")
    tags: bool = Field(default=False, description="object tags: account, kind, sha256, ...")
    metadata: bool = Field(default=True, description="x-amz-meta-* account, message-id, date")

    def problems(self, where: str) -> list[str]:
        """What makes these options unusable (checked once merged with the defaults)."""
        if self.sse == "kms" and not self.kms_key_id:
            return [f"{where}.kms_key_id: sse: kms needs the KMS key id (or ARN / alias)"]
        if self.kms_key_id and self.sse != "kms":
            return [f"{where}.kms_key_id: only used with sse: kms (sse is {self.sse})"]
        return []

    @property
    def needs_s3(self) -> list[str]:
        """The options set here that only an S3 store can honour."""
        wanted = {
            "storage_class": self.storage_class is not None, "sse": self.sse != "none",
            "object_lock": self.object_lock is not None, "legal_hold": self.legal_hold,
            "tags": self.tags,
        }  # fmt: skip
        return [key for key, on in wanted.items() if on]


_AFTER_DAYS = re.compile(r"^after_days:\s*([0-9]{1,5})$")


def delete_mode(value: Any) -> str:
    """``after_store``, ``never``, ``after_days:N`` or ``{after_days: N}``, as one string."""
    if isinstance(value, dict) and set(value) == {"after_days"}:
        value = f"after_days:{value['after_days']}"
    if value in ("after_store", "never"):
        return str(value)
    match = _AFTER_DAYS.match(value) if isinstance(value, str) else None
    if match and int(match.group(1)) >= 1:
        return f"after_days:{int(match.group(1))}"
    raise ValueError(
        f"expected after_store, never, after_days:N or {{after_days: N}} with N a whole number "
        f"of days >= 1, got {value!r}"
    )


def merge_options(defaults: StorageOptions, own: StorageOptions | None) -> StorageOptions:
    """``defaults`` overridden by the keys ``own`` sets; a default KMS key is dropped when
    the account chooses another kind of encryption without naming a key."""
    base = StorageOptions(**{k: getattr(defaults, k) for k in StorageOptions.model_fields})
    if own is None:
        return base
    merged = base.model_copy(update={k: getattr(own, k) for k in own.model_fields_set})
    if merged.sse != "kms" and "kms_key_id" not in own.model_fields_set:
        merged = merged.model_copy(update={"kms_key_id": None})
    return merged


def option_problems(
    defaults: StorageOptions, accounts: list[tuple[str, StorageOptions]], *, s3: bool
) -> list[str]:
    """Every problem of the default and the per-account options, each naming its key."""
    problems: list[str] = []
    for where, opts in [("storage", defaults), *accounts]:
        problems += opts.problems(where)
        if not s3:
            problems += [f"{where}.{key}: needs an s3:// store" for key in opts.needs_s3]
    return list(dict.fromkeys(problems))
