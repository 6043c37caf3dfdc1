"""A raw MQTT client with a device's credentials, for sending frames the terminal never would."""

from __future__ import annotations

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
