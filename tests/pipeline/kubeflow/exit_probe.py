"""Executors for the entrypoint's exit tests, imported by class path in the task process."""
import atexit
from pathlib import Path

from tfx.dsl.components.base.base_executor import BaseExecutor


class MarkedExecutor(BaseExecutor):
    """Writes `<marker>.done` holding the module `tf.keras` is (Keras 2's `tf_keras...` or
    Keras 3's `keras...`), and asks the interpreter's teardown to write
    `<marker>.teardown` (which a process ended at once never writes)."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
        import tensorflow as tf

        marker = Path(exec_properties["marker"])
        marker.with_suffix(".done").write_text(tf.keras.__name__)
        atexit.register(marker.with_suffix(".teardown").write_text, "teardown")


class FailingExecutor(BaseExecutor):
    """Fails the way an executor's own bug does."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
        raise RuntimeError("the reason the executor broke")
