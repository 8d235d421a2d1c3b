"""The SDK's ``BatchLogRecordProcessor`` without ``copy.copy`` per record.

Its ``on_emit`` detaches the record from its context with a plain attribute
copy, not ``copy.copy`` (which goes through ``__reduce_ex__``). This uses the
stock processor's private ``_batch_processor``; when that is missing, the
stock ``on_emit`` runs.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

_EMPTY_CONTEXT = Context()


class DirectBatchLogRecordProcessor(BatchLogRecordProcessor):
    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        batch = getattr(self, "_batch_processor", None)
        record = log_record.log_record
        if batch is None or not hasattr(record, "__dict__"):
            super().on_emit(log_record)
            return
        # A shallow copy without the context (which may hold large objects), as the SDK does.
        detached = object.__new__(type(record))
        detached.__dict__.update(record.__dict__)
        detached.context = _EMPTY_CONTEXT
        batch.emit(
            ReadableLogRecord(
                log_record=detached,
                resource=log_record.resource if log_record.resource is not None else Resource.create({}),
                instrumentation_scope=log_record.instrumentation_scope,
                limits=log_record.limits,
            )
        )
