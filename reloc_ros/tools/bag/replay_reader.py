"""Replay, the reading side: a thread that reads the bag's raw messages ahead of the publisher.

:class:`Prefetch` feeds the publishing loop of :class:`~reloc_ros.tools.bag.replay_core.BagReplay`
through a bounded queue, pass after pass when the replay loops.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterable, Iterator

from rosbags.rosbag2 import Reader

__all__ = ["PREFETCH", "END_OF_PASS", "Prefetch"]

#: Messages read ahead of the publisher by the reading thread.
PREFETCH = 64
#: Kind of the item that closes a pass: ``(END_OF_PASS, pass)``.
END_OF_PASS = "end_of_pass"
_DONE = "done"
_ERROR = "error"


class Prefetch(threading.Thread):
    """Reads the bag ahead of the publisher into a bounded queue (one reader, own thread).

    :meth:`items` yields ``("msg", pass, topic, bag_ns, raw, immediate)`` and
    ``(END_OF_PASS, pass)``; it raises the reading thread's exception, if any. ``immediate``
    marks the latched messages before the start offset (published at the start of the pass,
    unscheduled).

    Args:
        path: the rosbag2 folder.
        topics: the topics to read.
        latched: those of them whose messages before ``begin_ns`` are still published.
        begin_ns: bag time at which a pass starts (the start offset applied).
        loop: start over at the end.
        max_loops: the most passes when looping (None: until stopped).
        stop: set it to stop reading.
    """

    def __init__(self, path: Path, topics: Iterable[str], latched: Iterable[str], begin_ns: int,
                 loop: bool, max_loops: int | None, stop: threading.Event):
        super().__init__(name="bag-prefetch", daemon=True)
        self.path, self.topics, self.latched = path, set(topics), set(latched)
        self.begin_ns, self.loop, self.max_loops, self.stop = begin_ns, loop, max_loops, stop
        self.q: queue.Queue = queue.Queue(maxsize=PREFETCH)

    def _put(self, item) -> bool:
        """Queue ``item``, waiting for room; False once stopped."""
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _one_pass(self, reader, k: int, conns: list, latched: list) -> bool:
        """Queue the messages of pass ``k``; False once stopped."""
        if latched and self.begin_ns > reader.start_time:
            for c, t, raw in reader.messages(connections=latched, stop=self.begin_ns):
                if not self._put(("msg", k, c.topic, t, bytes(raw), True)):
                    return False
        if conns:
            for c, t, raw in reader.messages(connections=conns, start=self.begin_ns):
                if not self._put(("msg", k, c.topic, t, bytes(raw), False)):
                    return False
        return self._put((END_OF_PASS, k))

    def run(self) -> None:
        """Read pass after pass into the queue (the thread's body)."""
        try:
            with Reader(self.path) as reader:
                conns = [c for c in reader.connections if c.topic in self.topics]
                latched = [c for c in conns if c.topic in self.latched]
                k = 0
                while not self.stop.is_set():
                    if not self._one_pass(reader, k, conns, latched):
                        return
                    k += 1
                    if not self.loop or (self.max_loops is not None and k >= self.max_loops):
                        break
            self._put((_DONE,))
        except BaseException as e:  # surfaced by the publishing loop
            self._put((_ERROR, e))

    def items(self) -> Iterator[tuple]:
        """The queued items, until the end of the last pass or until stopped."""
        while True:
            try:
                item = self.q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            if item[0] == _DONE:
                return
            if item[0] == _ERROR:
                raise item[1]
            yield item
