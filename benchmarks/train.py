"""Steady-state training throughput of kgooglenet vs torchvision's googlenet, trained the same way, on this machine.

Both sides train the same network - the "bn" GoogLeNet (torchvision's architecture) WITH its two aux heads (torchvision
trains them by default; loss = main + 0.3 * (aux1 + aux2)), 1000 classes, 224x224, batch 32, dropout on, SGD momentum
0.9 lr 0.01 with coupled L2 weight decay 1e-4 - on one cached synthetic batch (no input pipeline cost), channels-last
(NHWC in Keras; torch.channels_last), in float32 and in bfloat16 (Keras "mixed_bfloat16"; torch CPU autocast to
bfloat16). Each configuration runs in its own subprocess (fresh memory, no torch/TF import clash) and reports
images/s over the steps after the warmup (tracing and oneDNN primitive creation excluded) and its peak RSS.

Run:
    python benchmarks/train.py                      # about 4-5 minutes on 2 cores
    python benchmarks/train.py --steps 20 --json results.json

Measured on the project machine (2 cores, AVX512-BF16, oneDNN on; load average < 1 during the runs), before and
after ConvBlock moved to TF's fused BatchNorm kernel (kgooglenet.layers.FusedBatchNormalization):
    float32         Keras BatchNormalization 16.6-17.0 img/s (2.7 GB)  fused 17.2 img/s (2.7 GB)   torch 16.3-16.8 img/s
                    ratio 1.01-1.02x -> about 1.03x
    mixed_bfloat16  Keras BatchNormalization 23.9 img/s (2.3 GB)       fused 31.7 img/s (2.0 GB)   torch 27.2 img/s
                    ratio 0.88x -> about 1.17x
    (the fused column: `--no-torch --steps 6` with the committed layer; a monkey-patched run measured 19.5-20.0 and
    33.2.) Both sides in one run of this script (2026-11-22, default steps): float32 keras 19.2 img/s (2.6 GB) vs
    torch 15.9 (2.6 GB), 1.21x; mixed_bfloat16 keras 32.8 (2.0 GB) vs torch 28.1 (1.8 GB), 1.17x.
Keras 3's own BatchNormalization is unfused (moments + tf.nn.batch_normalization as separate ops) and under
mixed_bfloat16 casts every activation to float32 and back around each of the 59 BatchNorms; the fused kernel is
bfloat16-native in oneDNN. The aux heads (adaptive-pool einsum) cost 2-4%; the ceil-mode pools use TF's native
pooling at 224. Background load hurts torch's OpenMP threads more than TF's thread pool: compare the
"per CPU-second" ratio when the machine is busy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

KERAS_WORKER = textwrap.dedent("""
    import json, os, resource, sys, time
    precision, steps, warmup, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    import numpy as np, tensorflow as tf, keras
    from kgooglenet.data import DataConfig
    from kgooglenet.model import aux_targets
    from kgooglenet.train import TrainConfig, build_model_and_compile

    config = TrainConfig(data=DataConfig(source="digits", image_size=224, batch_size=batch), variant="bn",
                         aux_heads=True, optimizer="sgd", momentum=0.9, learning_rate=0.01, weight_decay=1e-4,
                         schedule="constant", precision=precision, steps_per_execution=1)
    keras.utils.set_random_seed(0)
    model = build_model_and_compile(config, num_classes=1000)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, 224, 224, 3)).astype("float32")
    y = rng.integers(0, 1000, batch).astype("int32")
    data = tf.data.Dataset.from_tensors((x, y)).map(aux_targets).cache().repeat().prefetch(2)

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append((time.perf_counter(), time.process_time()))

    times = []
    model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[Clock()])
    seconds = times[-1][0] - times[warmup - 1][0]
    cpu = times[-1][1] - times[warmup - 1][1]
    print("RESULT " + json.dumps({"images_per_s": steps * batch / seconds, "step_s": seconds / steps,
                                  "images_per_cpu_s": steps * batch / cpu,
                                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")

TORCH_WORKER = textwrap.dedent("""
    import json, os, resource, sys, time
    precision, steps, warmup, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    import torch, torchvision

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = (torch.rand(batch, 3, 224, 224) * 2 - 1).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()
    autocast = precision == "mixed_bfloat16"

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
            loss = loss_fn(out.logits, y) + 0.3 * (loss_fn(out.aux_logits1, y) + loss_fn(out.aux_logits2, y))
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    print("RESULT " + json.dumps({"images_per_s": steps * batch / seconds, "step_s": seconds / steps,
                                  "images_per_cpu_s": steps * batch / cpu,
                                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def run_worker(source: str, precision: str, steps: int, warmup: int, batch: int, timeout: int, *extra) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", source, precision, str(steps), str(warmup), str(batch), *extra],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0 or "RESULT " not in proc.stdout:
        raise RuntimeError(f"benchmark worker failed ({precision}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing, oneDNN primitive caches)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--no-torch", action="store_true", help="only the Keras side")
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)

    try:
        import importlib.util

        has_torch = importlib.util.find_spec("torchvision") is not None and not args.no_torch
    except ImportError:
        has_torch = False
    results = {}
    for precision in args.precisions:  # alternate the frameworks so background load hits both alike
        row = {"keras": run_worker(KERAS_WORKER, precision, args.steps, args.warmup, args.batch_size, args.timeout)}
        if has_torch:
            row["torch"] = run_worker(TORCH_WORKER, precision, args.steps, args.warmup, args.batch_size, args.timeout)
            row["ratio"] = row["keras"]["images_per_s"] / row["torch"]["images_per_s"]
            row["cpu_ratio"] = row["keras"]["images_per_cpu_s"] / row["torch"]["images_per_cpu_s"]
        results[precision] = row
        k = row["keras"]
        line = f"{precision:<15} keras {k['images_per_s']:6.1f} img/s ({k['peak_rss_mb']:6.0f} MB peak)"
        if has_torch:
            t = row["torch"]
            line += (f"   torch {t['images_per_s']:6.1f} img/s ({t['peak_rss_mb']:6.0f} MB peak)"
                     f"   keras/torch {row['ratio']:.2f}x (per CPU-second {row['cpu_ratio']:.2f}x)")
        print(line, flush=True)
    print(f"(bn GoogLeNet + aux heads, 224x224, batch {args.batch_size}, SGD momentum, {args.steps} timed steps after "
          f"{args.warmup} warmup steps, {os.cpu_count()} CPU cores)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
