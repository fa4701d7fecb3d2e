"""ordered_map: input order, bounded read-ahead, the same results on threads as inline."""
import threading

from s2s_media.parallel import ordered_map


def test_results_in_input_order_inline_and_on_threads():
    items = list(range(50))
    assert list(ordered_map(lambda x: x * x, items, workers=0, ahead=0)) == [x * x for x in items]
    assert list(ordered_map(lambda x: x * x, items, workers=3, ahead=6)) == [x * x for x in items]


def test_read_ahead_is_bounded():
    started = []
    lock = threading.Lock()

    def work(x):
        with lock:
            started.append(x)
        return x

    gen = ordered_map(work, range(100), workers=2, ahead=4)
    assert next(gen) == 0
    assert len(started) <= 6          # the first result is handed out once 5 items are submitted
    gen.close()                       # the rest are cancelled, not run
    assert len(started) <= 6
