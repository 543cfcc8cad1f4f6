"""Signals between the sync step and the policy: files in the synchronizer's data folder."""

from __future__ import absolute_import

import os
import time

from xosconfig import Config


def get_signal_fn(model, name):
    folder = os.path.join(Config.get("data_dir"), "signals")
    if not os.path.isdir(folder):
        os.makedirs(folder)
    return os.path.join(folder, "signal_%s_%s_%s" % (model.model_name, model.id, name))


def put_signal(log, model, name):
    with open(get_signal_fn(model, name), "a") as f:
        f.write(str(time.time()) + "\n")


def wait_for_signal(log, model, name, timeout=10):
    fn = get_signal_fn(model, name)
    deadline = time.time() + timeout
    while not os.path.exists(fn):
        if time.time() > deadline:
            log.error("TEST:FAIL - Timeout waiting for %s" % fn, model=model)
            raise Exception("timeout")
        time.sleep(0.05)
