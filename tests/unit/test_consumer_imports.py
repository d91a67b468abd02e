"""The CPU worker runs on onnxruntime + tokenizers alone: building a whole worker imports no torch, and serving
(``reviews_mtl.model``) loads neither the trainer nor the data readers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_cpu_worker_imports_neither_torch_nor_transformers(tiny_model_dir: Path) -> None:
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "import consumer.cli, consumer.app, consumer.worker, consumer.output, consumer.supervisor\n"
        "from reviews_mtl.settings import ConsumerSettings, KafkaSettings, RedisSettings, TopicSettings\n"
        "from consumer.app import build_worker\n"
        f"s = ConsumerSettings(model_dir=Path({str(tiny_model_dir)!r}), runtime='onnx-int8', metrics_port=0)\n"
        # Nothing is contacted while building: librdkafka connects lazily, Redis on first command.
        "wp = build_worker(s, KafkaSettings(bootstrap_servers='127.0.0.1:1'), TopicSettings(),\n"
        "                  RedisSettings(url='redis://127.0.0.1:1/0'))\n"
        "preds = wp.worker.processor.predictor.predict(['works great', 'broke in a day'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "print(json.dumps({'n': len(preds), 'heavy': heavy}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"n": 2, "heavy": []}


def test_serving_loads_neither_training_nor_data_nor_heavy_libraries(tiny_model_dir: Path) -> None:
    code = (
        "import sys, json\n"
        "import consumer, consumer.app, consumer.cli, consumer.processing, consumer.worker\n"
        "import reviews_mtl.model\n"
        "from reviews_mtl.model import load_predictor\n"
        f"load_predictor({str(tiny_model_dir)!r}, runtime='onnx-int8').predict(['works great'])\n"
        "banned = ('torch', 'transformers', 'sklearn', 'reviews_mtl.training', 'reviews_mtl.data')\n"
        "loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + '.') for b in banned))\n"
        "print(json.dumps(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
