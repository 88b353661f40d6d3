"""Load test of clicktrack with the original analysis's click mix (Locust).

    pip install locust
    locust -f deploy/locust/locustfile.py --host http://127.0.0.1:8080 \
        --headless --users 100 --spawn-rate 10 --run-time 5m

The same mix as the seed's test_load.py (uid U1..U1000, campaigns 123/456/789, sources
0/100/200/300, tags A, B, C, A,B, B,C or none), sent as LINE's in-app browser sends it, with
one difference: every click goes to a target of its own on an allowed host
(CLICKTRACK_TARGET_HOST, default example.com; start clicktrack with `--allow-host` for it),
so no two clicks are the same tap and de-duplication records every one of them.

A request passes when it gets a 302 to its own target; anything else is a failure, and
Locust exits 1 when there was one. The campaigns must exist (`clicktrack campaign add`),
or the clicks are set aside as rejects (still a 302).
"""

import os
import random
import uuid

from locust import HttpUser, between, task

TARGET_HOST = os.environ.get("CLICKTRACK_TARGET_HOST", "example.com")
# LINE's in-app browser on iOS: a click, not a link-preview bot.
LINE_IN_APP = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 Line/13.20.0"
)


class LineMember(HttpUser):
    """A member tapping campaign links, a fraction of a second apart."""

    wait_time = between(0.1, 0.5)

    @task
    def tap(self):
        target = f"https://{TARGET_HOST}/landing/{uuid.uuid4().hex}"
        params = {
            "uid": f"U{random.randint(1, 1000)}",
            "cid": random.choice([123, 456, 789]),
            "src": random.choice([0, 100, 200, 300]),
            "type": "image_click",
            "to": target,
            "tag": random.choice(["A", "B", "C", "A,B", "B,C", ""]),
        }
        with self.client.get(
            "/__track",
            params=params,
            headers={"User-Agent": LINE_IN_APP},
            allow_redirects=False,
            name="/__track",
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                response.failure(f"status {response.status_code}, not 302")
            elif response.headers.get("Location") != target:
                response.failure(f"redirected to {response.headers.get('Location')!r}")
            else:
                response.success()
