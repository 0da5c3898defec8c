"""What several test files share: a keras-hub-style layer test, and loading a recipe script as a module.

`run_layer_test(...)` is keras-hub's `TestCase.run_layer_test` cut to what kgooglenet's layers need: config round
trip, dtype policies, a dynamic batch in a functional model, and a `.keras` save/load round trip.

Recipes are scripts, not a package; `load_recipe("tune")` runs recipes/tune.py's top level (imports and definitions
only: every recipe keeps its work in `main(argv)`) and returns the module.
"""

import importlib.util
import os
import tempfile

import keras
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def run_layer_test(layer_cls, init_kwargs, input_shape, expected_output_shape, policies=("float32", "mixed_bfloat16"),
                   low=0.0, high=5.0):
    """Check one registered layer; returns the float32 layer (built and called once) for further checks.

    - `layer_cls(**init_kwargs)` on a random batch of `input_shape` gives `expected_output_shape`;
    - get_config -> from_config, and serialize -> deserialize by its registered name, give the same config, a built
      layer, and (with the weights copied) the same outputs;
    - under each dtype policy of `policies` the layer (made from its config with that dtype) computes in the policy's
      compute dtype, keeps float32 variables and agrees with float32 within bfloat16/float16 tolerance;
    - in a functional model with a None batch dimension it gives the expected shape for batches of 1 and 3;
    - that model saved to `.keras` and loaded back gives the same outputs.
    """
    x = np.random.default_rng(0).uniform(low, high, input_shape).astype("float32")
    layer = layer_cls(**init_kwargs)
    out = np.asarray(layer(x))
    assert out.shape == tuple(expected_output_shape), (layer_cls.__name__, out.shape, expected_output_shape)
    config = layer.get_config()

    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    clone.build(input_shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), out, rtol=1e-6, atol=1e-6)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is layer_cls and revived.get_config() == config
    assert revived.built  # the serialized build config rebuilds every sublayer
    revived.set_weights(layer.get_weights())
    np.testing.assert_allclose(revived(x), out, rtol=1e-6, atol=1e-6)

    for name in policies:
        policy = keras.DTypePolicy(name)
        typed = layer_cls.from_config(_with_dtype(config, name))
        typed.build(input_shape)
        typed.set_weights(layer.get_weights())
        y = typed(x)
        assert keras.backend.standardize_dtype(y.dtype) == policy.compute_dtype, (layer_cls.__name__, name, y.dtype)
        assert all(keras.backend.standardize_dtype(v.dtype) == policy.variable_dtype for v in typed.weights)
        tol = 1e-5 if policy.compute_dtype == "float32" else 5e-2
        np.testing.assert_allclose(np.asarray(keras.ops.cast(y, "float32")), out, rtol=tol,
                                   atol=tol * max(1.0, float(np.abs(out).max())))

    inputs = keras.Input(shape=input_shape[1:])
    model = keras.Model(inputs, layer(inputs))
    assert tuple(model.output.shape) == (None, *expected_output_shape[1:])
    for n in (1, 3):
        batch = np.repeat(x[:1], n, axis=0)
        assert tuple(model(batch).shape) == (n, *expected_output_shape[1:])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "layer.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x), out, rtol=1e-6, atol=1e-6)
    return layer


def _with_dtype(config: dict, name: str) -> dict:
    """`config` with dtype policy `name`, also in the configs of layers passed as arguments (`output_pool=`): a layer
    given as an argument keeps its own policy, so the caller sets it."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(value.get("config"), dict) and "dtype" in value["config"]:
            value = {**value, "config": _with_dtype(value["config"], name)}
        out[key] = value
    out["dtype"] = name
    return out


def load_recipe(name: str):
    """recipes/<name>.py as a module, with its `main(argv)`."""
    spec = importlib.util.spec_from_file_location(f"recipes_{name}", os.path.join(ROOT, "recipes", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
