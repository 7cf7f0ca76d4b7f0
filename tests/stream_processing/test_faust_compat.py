"""Faust apps run here with the import changed: `import streams as faust`.

The apps below are Faust's own documented examples, written as Faust documents them; the only edits are listed
with each one. What stays out (Faust features this project does not have) is listed in docs/streams.md, "Coming
from Faust".

1. Faust's examples/word_count.py (the `word-counts` app): `faust.App(id, broker=, store="rocksdb://", version=1,
   topic_partitions=8)`, `app.topic("posts", value_type=str)`, `app.Table("word_counts", default=int, help=...)`,
   an agent splitting posts and sending each word to a second agent declared `@app.agent(value_type=str)` (its
   topic is `<app id>-count_words`), which does `word_counts[word] += 1`. Changes: the import; the web view
   (`@app.page` + `@app.table_route`) and the ANSI table printing (`as_ansitable`) are left out (no web server,
   no terminal tables here); the broker URL is the test's.
2. The same count with a words topic (`words_topic.send(key=word, value=word)`, Faust's "word count" in the
   user guide's Tables section): change: the import.
3. A windowed table as Faust's user guide declares it (`.tumbling(timedelta(minutes=1), expires=timedelta(hours=1))
   .relative_to_stream()`, `table[k] += 1`, `table[k].current()`): change: the import.
4. Faust's page-view tutorial: `views.group_by(PageView.id)` on a `faust.Record`. Changes: the import; `PageView`
   is a dataclass (there is no `faust.Record`), so the group_by names its key function and its topic:
   `views.group_by(lambda view: view.id, name="id")` (Faust takes the name from the field descriptor).
"""

from __future__ import annotations

import collections
import sys
import textwrap
import types

import pytest

import streams
from streams.testing import TestDriver
from streamtest import eventually

FAUST_WORD_COUNT = textwrap.dedent('''
    import asyncio
    import streams as faust        # was: import faust

    WORDS = ['the', 'quick', 'brown', 'fox']

    app = faust.App(
        'word-counts',
        broker=BROKER,
        store='rocksdb://',
        version=1,
        topic_partitions=8,
    )

    posts_topic = app.topic('posts', value_type=str)
    word_counts = app.Table('word_counts', default=int,
                            help='Keep count of words (str to int).')


    @app.agent(posts_topic)
    async def shuffle_words(posts):
        async for post in posts:
            for word in post.split():
                await count_words.send(key=word, value=word)


    @app.agent(value_type=str)
    async def count_words(words):
        """Count words from blog post article body."""
        async for word in words:
            word_counts[word] += 1
''')

FAUST_WORDS_TOPIC = textwrap.dedent('''
    import streams as faust        # was: import faust

    app = faust.App('word-count', broker=BROKER)

    posts_topic = app.topic('posts', value_type=str)
    words_topic = app.topic('words', key_type=str, value_type=str)

    word_counts = app.Table('word_counts', default=int, partitions=4)


    @app.agent(posts_topic)
    async def shuffle_words(posts):
        async for post in posts:
            for word in post.split():
                await words_topic.send(key=word, value=word)


    @app.agent(words_topic)
    async def count_words(words):
        async for word in words:
            word_counts[word] += 1
''')

FAUST_PAGE_VIEWS = textwrap.dedent('''
    from dataclasses import dataclass  # was: a faust.Record
    import streams as faust            # was: import faust

    app = faust.App(
        'page_views',
        broker=BROKER,
        topic_partitions=4,
    )


    @dataclass
    class PageView:                    # was: class PageView(faust.Record):
        id: str
        user: str


    page_view_topic = app.topic('page_views', value_type=PageView)

    page_views = app.Table('page_views', default=int)


    @app.agent(page_view_topic)
    async def count_page_views(views):
        async for view in views.group_by(lambda view: view.id, name='id'):   # was: views.group_by(PageView.id)
            page_views[view.id] += 1
''')


FAUST_WINDOWED = textwrap.dedent('''
    from datetime import timedelta
    import streams as faust            # was: import faust

    app = faust.App('windowed-views', broker=BROKER, topic_partitions=2)
    page_view_topic = app.topic('page_views', key_type=str, value_type=str)

    views = app.Table('views', default=int).tumbling(
        timedelta(minutes=1),
        expires=timedelta(hours=1),
    ).relative_to_stream()

    seen = []


    @app.agent(page_view_topic)
    async def count_views(page_views):
        async for page, user in page_views.items():
            views[page] += 1
            seen.append((page, views[page].current()))
''')


def load(source: str, broker: str, name: str) -> types.ModuleType:
    """The app's module, as `python app.py` would have it (the agents find their tables through its globals)."""
    module = types.ModuleType(name)
    module.__dict__["BROKER"] = broker
    sys.modules[name] = module
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def posts(n: int, seed: int = 1) -> list[str]:
    import random
    rng = random.Random(seed)
    return [" ".join(rng.choice(["the", "quick", "brown", "fox", "jumps"]) for _ in range(rng.randrange(1, 9)))
            for _ in range(n)]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # the apps keep their state under ./.streams/<app id>
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("faust_app_")]:
        del sys.modules[name]


async def test_faust_word_count_example_runs_on_a_worker(in_tmp, bootstrap, running):
    wc = load(FAUST_WORD_COUNT, f"kafka://{bootstrap}", "faust_app_word_count")
    assert wc.app.default_partitions == 8 and wc.app.topics[f"word-counts-count_words"].value_type is str
    sample = posts(120)
    expected = collections.Counter(word for post in sample for word in post.split())
    async with running(wc.app):
        for post in sample:
            await wc.shuffle_words.send(value=post)
        await eventually(lambda: dict(wc.word_counts.items()) == expected, timeout=30)
        assert wc.word_counts["fox"] == expected["fox"] and wc.word_counts["unicorn"] == 0
    # the counts are a table with a changelog: a fresh worker (state directory gone) gets them back
    import shutil
    shutil.rmtree(in_tmp / ".streams" / "word-counts" / "state")
    wc2 = load(FAUST_WORD_COUNT, f"kafka://{bootstrap}", "faust_app_word_count2")
    async with running(wc2.app):
        assert dict(wc2.word_counts.items()) == expected


def test_faust_word_count_with_a_words_topic_on_the_test_driver(in_tmp):
    wc = load(FAUST_WORDS_TOPIC, "kafka://localhost:9092", "faust_app_words_topic")
    sample = posts(60, seed=2)
    expected = collections.Counter(word for post in sample for word in post.split())
    with TestDriver(wc.app) as driver:
        for post in sample:
            driver.pipe(wc.posts_topic, None, post)
        assert dict(wc.word_counts.items()) == expected
        # each word was counted in the partition of its key, where the words topic put it
        assert sorted(driver.read("words")) == sorted((w, w) for post in sample for w in post.split())


def test_faust_page_view_tutorial_with_a_dataclass_and_a_named_group_by(in_tmp):
    pv = load(FAUST_PAGE_VIEWS, "kafka://localhost:9092", "faust_app_page_views")
    import random
    rng = random.Random(4)
    views = [pv.PageView(id=rng.choice(["home", "cart", "faq"]), user=f"u{rng.randrange(5)}") for _ in range(50)]
    with TestDriver(pv.app) as driver:
        for view in views:
            driver.pipe(pv.page_view_topic, view.user, view)   # keyed by user: the agent re-keys by page
        assert dict(pv.page_views.items()) == collections.Counter(v.id for v in views)


def test_faust_app_settings_mean_what_they_mean_in_faust():
    # version > 1 is a new app: its own consumer group and internal topics (Faust: id "<id>-v<version>")
    assert streams.App("word-counts", version=1).id == "word-counts"
    v2 = streams.App("word-counts", version=2)
    assert v2.id == "word-counts-v2" and str(v2.workdir).endswith("word-counts-v2")
    assert streams.App("a", topic_partitions=8).default_partitions == 8
    assert streams.App("a", store="memory://").id == "a"
    with pytest.raises(ValueError, match="store"):
        streams.App("a", store="aerospike://")
    with pytest.raises(ValueError, match="version"):
        streams.App("a", version=0)
    # @app.agent(value_type=...) types the topic the agent declares (a name, or <app id>-<agent>)
    app = streams.App("a")

    @app.agent("numbers", value_type=int)
    async def numbers(stream):
        async for _ in stream:
            pass
    assert isinstance(app.topics["numbers"].value_serde, streams.IntSerde)


def test_faust_windowed_table_counts_per_minute_of_event_time(in_tmp):
    wt = load(FAUST_WINDOWED, "kafka://localhost:9092", "faust_app_windowed")
    import random
    rng = random.Random(8)
    t0 = 1_700_000_040_000   # a whole minute
    views = sorted(((rng.choice(["home", "cart"]), t0 + rng.randrange(0, 240_000)) for _ in range(80)),
                   key=lambda v: v[1])
    running = collections.Counter()
    expected_seen = []
    for page, ts in views:
        running[(page, ts - ts % 60_000)] += 1
        expected_seen.append((page, running[(page, ts - ts % 60_000)]))
    with TestDriver(wt.app) as driver:
        for page, ts in views:
            driver.pipe(wt.page_view_topic, page, "someone", timestamp=ts)
        assert wt.seen == expected_seen    # current(): the window of the record being processed
        for page in ("home", "cart"):
            got = {w.start: n for w, n in wt.app.store("views").fetch(page, 0, t0 + 600_000)}
            assert got == {start: n for (p, start), n in running.items() if p == page}
