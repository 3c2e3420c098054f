"""The inference node's Open Inference Protocol (KServe V2) endpoints, driven by NVIDIA's
official `tritonclient[http]` client, which nobody in this project wrote.

Starts the real `inference-node` binary on a free loopback port with the shipped converted
models and compares its answers with scikit-learn's own predictions (golden.json).
"""
import json
import os
import subprocess

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import ROOT, binary, free_port, stop, wait_http

MODELS_DIR = ROOT / "models" / "gdp_growth_rate"


@pytest.fixture(scope="module")
def golden():
    return json.loads((MODELS_DIR / "golden.json").read_text())


@pytest.fixture(scope="module")
def node():
    port = free_port()
    env = dict(os.environ)
    env.update({"PORT": str(port), "HOST": "127.0.0.1", "MODELS_DIR": str(MODELS_DIR)})
    env.pop("SERVICE_DISCOVERY_URL", None)
    env.pop("GDP_MODEL_NAME", None)
    proc = subprocess.Popen([str(binary("inference-node"))], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture
def client(node):
    return httpclient.InferenceServerClient(url=node, network_timeout=20.0, connection_timeout=5.0)


def test_server_and_models_are_live_and_ready(client, golden):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "inference-node"
    for name in golden["models"]:
        assert client.is_model_ready(name)
    assert not client.is_model_ready("NoSuchModel")


def test_model_metadata_describes_the_tensors(client):
    metadata = client.get_model_metadata("RandomForest")
    assert metadata["name"] == "RandomForest"
    assert metadata["platform"] == "onnx_onnxv1"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert metadata["outputs"] == [{"name": "variable", "datatype": "FP64", "shape": [-1, 1]}]


@pytest.mark.parametrize("datatype,dtype", [("FP64", np.float64), ("FP32", np.float32)])
def test_infer_matches_golden_for_every_model(client, golden, datatype, dtype):
    rows = np.array(golden["holdout"]["rows"], dtype=dtype)
    for name, model in golden["models"].items():
        infer_input = httpclient.InferInput("input", list(rows.shape), datatype)
        infer_input.set_data_from_numpy(rows, binary_data=False)
        output = httpclient.InferRequestedOutput("variable", binary_data=False)
        result = client.infer(name, [infer_input], outputs=[output], request_id=f"golden-{name}")
        got = result.as_numpy("variable")
        assert got.shape == (len(rows), 1)
        assert result.get_response()["id"] == f"golden-{name}"
        want = np.array(model["predictions"], dtype=np.float64)
        if datatype == "FP64":
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=name)
        else:
            # float32 inputs shift values slightly; trees may then take another branch, so
            # only check the shapes and finiteness for FP32.
            assert np.isfinite(got).all(), name


@pytest.mark.parametrize("datatype,dtype", [("FP64", np.float64), ("FP32", np.float32)])
def test_binary_tensor_data_answers_as_the_json_path(client, golden, datatype, dtype):
    # tritonclient's defaults: binary inputs (set_data_from_numpy's binary_data=True) and, with
    # no outputs named, every output asked for as binary data.
    rows = np.array(golden["holdout"]["rows"], dtype=dtype)
    for name in golden["models"]:
        json_input = httpclient.InferInput("input", list(rows.shape), datatype)
        json_input.set_data_from_numpy(rows, binary_data=False)
        json_output = httpclient.InferRequestedOutput("variable", binary_data=False)
        want = client.infer(name, [json_input], outputs=[json_output]).as_numpy("variable")

        binary_input = httpclient.InferInput("input", list(rows.shape), datatype)
        binary_input.set_data_from_numpy(rows)
        binary_output = httpclient.InferRequestedOutput("variable", binary_data=True)
        for outputs in (None, [binary_output]):
            result = client.infer(name, [binary_input], outputs=outputs)
            output = result.get_output("variable")
            assert output["parameters"] == {"binary_data_size": want.size * 8}, name
            got = result.as_numpy("variable")
            assert got.dtype == np.float64, name
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_infer_errors_come_back_as_exceptions_with_messages(client):
    bad = httpclient.InferInput("input", [1, 3], "FP64")
    bad.set_data_from_numpy(np.zeros((1, 3)), binary_data=False)
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer("LinearRegression", [bad])
    good = httpclient.InferInput("input", [1, 4], "FP64")
    good.set_data_from_numpy(np.zeros((1, 4)), binary_data=False)
    with pytest.raises(InferenceServerException, match="NoSuchModel"):
        client.infer("NoSuchModel", [good])


def test_unsupported_endpoints_come_back_as_exceptions(client):
    # The node has no model configuration or shared-memory API; Triton's client must still get
    # an {"error": ...} body it can raise, not a KeyError from a body of another shape.
    # (On a body without "error" the client raises too, but with "an exception occurred in
    # the client while decoding the response" as the message.)
    for call in (lambda: client.get_model_config("LinearRegression"), client.get_system_shared_memory_status):
        with pytest.raises(InferenceServerException) as raised:
            call()
        assert (raised.value.status(), raised.value.message()) == ("404", "Not Found")


@pytest.fixture(scope="module")
def classifiers_golden():
    return json.loads((MODELS_DIR / "classifiers-golden.json").read_text())


VOTE_NUMBERS = ["popul", "TVnews", "selfLR", "age", "income"]
VOTE_STRINGS = ["party", "education"]


@pytest.mark.parametrize("binary_data", [True, False])
def test_string_columns_as_bytes_inputs(client, classifiers_golden, binary_data):
    # The shipped VoteChoice pipeline: numeric columns in "input" (FP64, NaN = missing), string
    # columns in "input_strings" (BYTES, "" = missing), tritonclient's default binary inputs
    # and its JSON form, compared with sklearn's answers to the README's body.
    golden = classifiers_golden["models"]["VoteChoice"]
    rows = json.loads(golden["body"])
    metadata = client.get_model_metadata("VoteChoice")
    assert metadata["inputs"] == [
        {"name": "input", "datatype": "FP64", "shape": [-1, 5]},
        {"name": "input_strings", "datatype": "BYTES", "shape": [-1, 2]},
    ]
    numbers = np.array([[np.nan if r[c] is None else r[c] for c in VOTE_NUMBERS] for r in rows], dtype=np.float64)
    strings = np.array([[(r[c] or "").encode() for c in VOTE_STRINGS] for r in rows], dtype=np.object_)
    if not binary_data:
        # JSON has no NaN: the JSON form sends the rows without missing numbers only.
        keep = ~np.isnan(numbers).any(axis=1)
        numbers, strings = numbers[keep], strings[keep]
    else:
        keep = np.ones(len(rows), dtype=bool)
    number_input = httpclient.InferInput("input", list(numbers.shape), "FP64")
    number_input.set_data_from_numpy(numbers, binary_data=binary_data)
    string_input = httpclient.InferInput("input_strings", list(strings.shape), "BYTES")
    string_input.set_data_from_numpy(strings, binary_data=binary_data)
    result = client.infer("VoteChoice", [number_input, string_input])
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
    assert labels == [l for l, k in zip(golden["labels"], keep) if k]
    want = np.array(golden["probabilities"], dtype=np.float64)[keep]
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, rtol=0, atol=1e-9)

    # A string column sent as numbers, or a missing input, is an exception with a message.
    wrong = httpclient.InferInput("input_strings", list(strings.shape), "FP64")
    wrong.set_data_from_numpy(np.zeros(strings.shape), binary_data=binary_data)
    with pytest.raises(InferenceServerException, match="expected BYTES"):
        client.infer("VoteChoice", [number_input, wrong])
    with pytest.raises(InferenceServerException, match="input_strings"):
        client.infer("VoteChoice", [number_input])
