from workers.cli.main import build_parser
from workers.config.settings import load_settings


def test_events_topic_is_optional_and_derived_from_the_pipeline_name() -> None:
    settings = load_settings("acoustic")
    assert settings.pipeline.topics.events == "acoustic.events"
    assert "acoustic.events" in settings.pipeline.topics.all()  # so `ontime topics create` makes it
    renamed = load_settings("acoustic", {"pipeline": {"name": "other"}})
    assert renamed.pipeline.topics.events == "other.events"
    named = load_settings("acoustic", {"pipeline": {"topics": {"events": "my.events"}}})
    assert named.pipeline.topics.events == "my.events"


def test_the_tuned_detector_settings_come_from_the_yaml() -> None:
    events = load_settings("acoustic").pipeline.events
    assert (
        events.hop_ms,
        events.smooth_windows,
        events.min_windows,
        events.threshold,
        events.refractory_ms,
    ) == (
        125,
        3,
        2,
        0.7,
        1500,
    )
    assert (events.pool, events.margin, events.peak) == ("mean", 0.0, False)


def test_aggregate_verb_and_stream_flags_are_registered() -> None:
    parser = build_parser()
    args = parser.parse_args(["aggregate", "--commit-interval", "2"])
    assert args.commit_interval == 2.0
    args = parser.parse_args(["devices", "simulate", "--stream", "--hop-ms", "125", "--keywords", "3"])
    assert args.stream and args.hop_ms == 125 and args.keywords == 3
    args = parser.parse_args(["demo", "--stream"])
    assert args.stream
    args = parser.parse_args(["bench", "events", "--background-hours", "0.5"])
    assert args.background_hours == 0.5


def test_streaming_devices_send_at_the_hop_the_detector_is_tuned_for() -> None:
    from workers.tools.stream import StreamFleet, StreamPlan

    settings = load_settings("acoustic")
    fleet = StreamFleet(settings, 1, StreamPlan(seconds=3, keywords=0))
    assert fleet.hop_ms == settings.pipeline.events.hop_ms
    assert StreamFleet(settings, 1, StreamPlan(seconds=3, keywords=0), 250).hop_ms == 250
