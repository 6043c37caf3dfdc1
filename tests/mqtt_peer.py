"""A raw MQTT client with a device's credentials, for sending frames the terminal never would."""

from __future__ import annotations

import json
import signal
import tomllib
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from simulators.hall import Hall, wait_for


class RawDevice:
    """Connected with MQTT 5 so that an ACL denial comes back as a reason code."""

    def __init__(self, hall: Hall, device: str, client_id: str | None = None) -> None:
        self.settings: dict[str, Any] = tomllib.loads(Path(hall.terminal_config(device)).read_text())
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"raw-{device}", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(device, self.settings["broker"]["password"])
        self.client.tls_set_context(hall.tls_context())
        self.acks: dict[int, Any] = {}
        self.disconnects: list[Any] = []
        self.client.on_publish = lambda c, u, mid, reason, props: self.acks.__setitem__(mid, reason)
        self.client.on_disconnect = lambda c, u, flags, reason, props: self.disconnects.append(reason)
        self.client.connect("127.0.0.1", hall.broker_port)
        self.client.loop_start()
        wait_for(self.client.is_connected, 10, "the raw client to connect")

    def publish(self, topic: str, payload: bytes) -> Any:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        return wait_for(lambda: self.acks.get(info.mid), 10, "the PUBACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_as_hub(hall: Hall, devices: list[str], payloads: list[dict[str, Any]]) -> None:
    """Send ``payloads`` on each device's ``cmd`` topic as the hub's broker user would (the hub
    checks the commands it queues, so only a hub with a bug, or with its credentials taken, sends
    these). The hub is stopped meanwhile: its user holds one connection, and its session is kept."""
    hall.kill("hub", signal.SIGTERM)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hub", clean_session=False)
    client.username_pw_set(hall.config.broker.user, hall.config.broker.password)
    client.tls_set_context(hall.tls_context())
    client.connect("127.0.0.1", hall.broker_port)
    client.loop_start()
    try:
        for device in devices:
            for payload in payloads:
                topic = f"haocha/v1/{hall.config.hall}/{device}/cmd"
                client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
        hall.start_hub()
