"""MQTT client settings both sides share."""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as mqtt


def no_delay(client: mqtt.Client) -> None:
    """Send small frames at once. paho leaves Nagle's algorithm on: a PUBACK followed by an ack
    publish then waits for the peer's delayed ACK, about 40 ms a hop on Linux."""

    def on_socket_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    client.on_socket_open = on_socket_open
