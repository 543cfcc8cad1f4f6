"""Helpers of the steps folder, which the pull step imports too (as fabric's pull step does)."""

import json
import os

from xosconfig import Config


def read_pod_ips():
    """Pod name -> IP, as the pod service's API lists them (here: a file in the data folder)."""
    fn = os.path.join(Config.get("data_dir"), "pods.json")
    if not os.path.exists(fn):
        return {}
    with open(fn) as f:
        return json.load(f)
