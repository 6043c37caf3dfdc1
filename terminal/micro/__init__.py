"""MicroPython firmware for microcontroller-class terminals (ESP32 with Wi-Fi).

These modules run under MicroPython, not CPython: they are copied flat onto a board
(``terminal.micro_host.board_files``) or run by the unix port with the simulated board
(``terminal.micro_host.run_sim``). This file only makes the folder package data.
"""
