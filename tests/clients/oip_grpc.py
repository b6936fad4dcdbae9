"""Calls a tensorlet server's OIP gRPC endpoint with one of the two Python
clients people use, tritonclient[grpc] or kserve's InferenceGRPCClient, and
prints what it got as JSON (tests/serve.rs compares it with the HTTP answer).
One client per process: both register the `inference` protobuf package, and
Python's descriptor pool refuses it twice.

    python oip_grpc.py triton|kserve HOST:PORT MODEL ROWS_JSON
"""

import asyncio
import json
import sys

import numpy as np


def with_triton(url, model, rows):
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    c = triton.InferenceServerClient(url=url)
    out = {
        "live": c.is_server_live(),
        "ready": c.is_server_ready(),
        "model_ready": c.is_model_ready(model),
        "server": c.get_server_metadata(as_json=True)["name"],
        "inputs": c.get_model_metadata(model, as_json=True)["inputs"],
    }
    x = np.array(rows, dtype=np.float32)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)  # raw_input_contents
    r = c.infer(model, [inp], request_id="triton-1")
    out["id"] = r.get_response().id
    out["label"] = r.as_numpy("label").tolist()
    out["probabilities"] = r.as_numpy("probabilities").tolist()
    try:
        c.infer("no-such-model", [inp])
        out["unknown_model"] = "answered"
    except InferenceServerException as e:
        out["unknown_model"] = e.status()
    return out


async def with_kserve(url, model, rows):
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    c = InferenceGRPCClient(url=url, timeout=30)
    try:
        out = {
            "live": await c.is_server_live(),
            "ready": await c.is_server_ready(),
            "model_ready": await c.is_model_ready(model),
        }
        flat = [float(v) for row in rows for v in row]
        inp = InferInput("input", [len(rows), len(rows[0])], "FP32", data=flat)
        r = await c.infer(InferRequest(model, [inp], request_id="kserve-1"))
        out["id"] = r.id
        by_name = {o.name: o for o in r.outputs}
        out["label"] = by_name["label"].as_numpy().reshape(-1).tolist()
        out["probabilities"] = by_name["probabilities"].as_numpy().reshape(len(rows), -1).tolist()
        return out
    finally:
        await c.close()


def main():
    client, url, model = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = json.loads(sys.argv[4])
    if client == "triton":
        out = with_triton(url, model, rows)
    else:
        out = asyncio.run(with_kserve(url, model, rows))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
