"""The Python SDK with a Viewer's key: every write fails with the SDK's own error.

The Rust test that runs this script checks afterwards, with the owner's key, that nothing
was written.
"""

import os
import sys

import braintrust
from braintrust.api.errors import BraintrustHTTPError

PROJECT = os.environ.get("HF_PROJECT", "compat-viewer")


def main():
    # Logging: the project registers (a viewer may read it), the log batch is refused and the
    # SDK reports it and drops the batch; nothing reaches the store.
    logger = braintrust.init_logger(project=PROJECT)
    logger.log(input="viewer input", output="viewer output")
    logger.flush()
    print("logger: flushed")

    # Eval: the SDK cannot create the experiment and raises its own HTTP error.
    try:
        braintrust.Eval(
            PROJECT,
            data=[{"input": 1, "expected": 1}],
            task=lambda x: x,
            scores=[],
        )
    except BraintrustHTTPError as e:
        if "403" not in str(e):
            print(f"eval: unexpected error {e}")
            sys.exit(1)
        print("eval: refused with HTTP 403")
    else:
        print("eval: was not refused")
        sys.exit(1)

    # Datasets register lazily: the SDK reports the refused registration while flushing and
    # drops the batch, as for logs.
    dataset = braintrust.init_dataset(project=PROJECT, name="viewer-data")
    dataset.insert(input="x", expected="y")
    dataset.flush()
    print("dataset: flushed")
    print("python viewer flow: all refused")


if __name__ == "__main__":
    main()
