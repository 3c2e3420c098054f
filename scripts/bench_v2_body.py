"""Writes the Open Inference Protocol binary request of a JSON batch for scripts/bench-boosted.sh,
and checks that two nodes answer it with the bits of their POST /predict answers, and alike.

The request: the rows as one FP64 tensor in the model's feature order (from the node's V2
metadata; null as NaN), asking for the output as binary FP64 too. Writes OUT and
OUT.header-length (the JSON header's length, for the Inference-Header-Content-Length header).

Usage: bench_v2_body.py ROWS.json OUT MODEL NODE_URL [NODE_URL...]   (exits 1 on a mismatch)
"""

import json
import math
import struct
import sys
import urllib.request


def post(url: str, body: bytes, headers: dict):
    return urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers))


def main() -> int:
    rows_file, out, model, *nodes = sys.argv[1:]
    rows = json.load(open(rows_file))
    info = json.load(urllib.request.urlopen(f"{nodes[0]}/v2/models/{model}"))
    names = [f["name"] for f in info["parameters"]["features"]]
    values = [math.nan if r.get(n) is None else float(r[n]) for r in rows for n in names]
    data = struct.pack(f"<{len(values)}d", *values)
    head = json.dumps({
        "inputs": [{"name": "input", "shape": [len(rows), len(names)], "datatype": "FP64",
                    "parameters": {"binary_data_size": len(data)}}],
        "outputs": [{"name": info["outputs"][0]["name"], "parameters": {"binary_data": True}}],
    }).encode()
    open(out, "wb").write(head + data)
    open(out + ".header-length", "w").write(str(len(head)))
    answers = []
    for node in nodes:
        reply = post(f"{node}/v2/models/{model}/infer", head + data, {
            "content-type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(head)),
        })
        length = int(reply.headers["Inference-Header-Content-Length"])
        got = struct.unpack(f"<{len(rows)}d", reply.read()[length:])
        predicted = json.load(post(f"{node}/predict?model={model}", json.dumps(rows).encode(),
                                   {"content-type": "application/json"}))["prediction"]
        if [struct.pack("<d", v) for v in got] != [struct.pack("<d", v) for v in predicted]:
            print(f"{model}: {node} answers the V2 request and POST /predict differently", file=sys.stderr)
            return 1
        answers.append(got)
    if any(a != answers[0] for a in answers):
        print(f"{model}: the nodes answer differently", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
