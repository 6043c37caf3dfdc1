"""Panel bytes are input too (SPEC section 10): the serial line protocol's parser, fuzzed.

Noise on an RS-485 or USB line, a panel with a firmware bug, or someone with a laptop on the bus:
whatever arrives, the parser returns only well-formed frames (known type, its number of fields,
each in 0..2**32-1), counts the rest, never raises, and finds the next good frame after the noise.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.panels.lineproto import ARITY, MAX_FRAME, Frame, FrameParser, Msg, crc16, encode

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
GOOD = encode(Msg.PRESS, 3, 17, 2)


def checksummed(body: bytes) -> bytes:
    """A frame whose checksum is right whatever its body says: what a buggy panel sends."""
    return b"$" + body + b"*" + f"{crc16(body):04X}".encode() + b"\r\n"


bodies = st.one_of(
    st.binary(max_size=MAX_FRAME),
    st.builds(
        lambda letter, fields: ",".join([letter, *fields]).encode(errors="replace"),
        st.sampled_from([m.value for m in Msg] + ["X", "", "p"]),
        st.lists(
            st.one_of(
                st.integers(min_value=-(2**40), max_value=2**40).map(str),
                st.sampled_from(["", " 1", "1_0", "+1", "0x10", "１", "1e3", "99999999999999999999"]),
            ),
            max_size=7,
        ),
    ),
)
chunks = st.lists(st.one_of(st.binary(max_size=120), bodies.map(checksummed), st.just(GOOD)), max_size=12)


@FUZZ
@given(chunks)
def test_the_parser_returns_only_well_formed_frames_and_never_raises(data: list[bytes]) -> None:
    parser = FrameParser()
    frames = [frame for chunk in data for frame in parser.feed(chunk)]
    for frame in frames:
        assert isinstance(frame.msg, Msg) and len(frame.args) == ARITY[frame.msg]
        assert all(type(a) is int and 0 <= a <= 0xFFFFFFFF for a in frame.args)
    assert parser.counts["frames"] == len(frames)


@FUZZ
@given(st.binary(max_size=400))
def test_a_good_frame_after_any_noise_is_found(noise: bytes) -> None:
    """Every ``$`` may start a frame: after noise, the next good frame comes through (any
    half frame the noise may end with is cut short by the good frame's ``$``)."""
    parser = FrameParser()
    parser.feed(noise)
    assert parser.feed(GOOD)[-1:] == [Frame(Msg.PRESS, (3, 17, 2))]
