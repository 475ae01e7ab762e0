"""The frame codec both ends of the WebSocket benchmark rely on."""

from __future__ import annotations

import os

from benchmarks.wsframes import OP_BINARY, OP_TEXT, FrameReader, accept_key, encode_frame


def test_accept_key_matches_the_rfc_6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_lengths_past_125_and_65535_use_the_extended_length_fields() -> None:
    assert encode_frame(OP_BINARY, b"x" * 126)[1] == 126
    assert encode_frame(OP_BINARY, b"x" * 65536)[1] == 127


def test_reader_unmasks_frames_split_at_every_byte() -> None:
    payloads = [b"hi", os.urandom(300), os.urandom(70000)]
    stream = b"".join(encode_frame(OP_BINARY, p, os.urandom(4)) for p in payloads)
    reader = FrameReader()
    got = [frame for i in range(len(stream)) for frame in reader.feed(stream[i:i + 1])]
    assert [payload for _, payload in got] == payloads


def test_reader_keeps_fin_bit_and_opcode() -> None:
    (b0, payload), = FrameReader().feed(encode_frame(OP_TEXT, b"abc", fin=False))
    assert (b0 & 0x80, b0 & 0x0F, payload) == (0, OP_TEXT, b"abc")
