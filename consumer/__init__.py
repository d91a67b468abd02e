"""The streaming worker. Start reading at ``worker`` (the loop and its order of steps), then
``processing`` (one batch in, what goes out) and ``output`` (the Kafka transaction)."""

from consumer.batcher import MicroBatcher
from consumer.processing import BatchOutput, BatchProcessor, InMessage
from consumer.worker import Worker, WorkerOptions

__all__ = ["BatchOutput", "BatchProcessor", "InMessage", "MicroBatcher", "Worker", "WorkerOptions"]
