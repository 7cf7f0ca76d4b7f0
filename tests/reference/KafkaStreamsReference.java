// Runs a scenario through Apache Kafka Streams' TopologyTestDriver and prints what the topology wrote, so that the
// tests can compare our streams framework with the real thing on the same input (tests/reference/kstreams.py).
//
//   java -cp '.tools/kafka-streams-libs/*' tests/reference/KafkaStreamsReference.java [scenarios.jsonl]
//
// Input (the file named, else stdin): one JSON scenario per line, for example
//   {"type": "windowed-aggregation",
//    "window": {"kind": "tumbling", "size": 10000, "grace": 5000},
//    "aggregation": "count", "emit": "all",
//    "records": [["k1", 3, 1000], ["k2", null, 2000], ["in", "k1", 4, 1500]]}
// "min_value": N (optional) filters out values below N (and null values) before grouping.
//   {"type": "join", "kind": "stream-stream", "join": "left",
//    "window": {"before": 5000, "after": 5000, "grace": 1000},
//    "records": [["left", "a", 3, 1000], ["right", "a", 7, 2000]]}
// joins topic "left" with topic "right" (see join() for the kinds and their parameters) and writes the joiner's
// "l|r" strings to "out".
// A record is [key, value, timestamp] on topic "in", or [topic, key, value, timestamp]; keys are strings, values
// longs (either may be null). Output, per scenario: one JSON line per record written to the output topic, then
// {"done": N} (N output lines), or {"error": "..."} then {"done": 0} if the scenario failed. The program reads
// scenarios until end of input, so one JVM serves a whole test session.
//
// Each scenario type is a builder (see TYPES) that wires a topology from the scenario's input topics to the topic
// "out" and says how to print an output record: add joins and other operations as new builders.

import java.io.BufferedReader;
import java.io.File;
import java.io.FileReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.function.Function;

import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.LongSerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.GlobalKTable;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.Joined;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.KeyValueMapper;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.SlidingWindows;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.ValueJoiner;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.SessionStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;
import org.apache.kafka.streams.test.TestRecord;

public class KafkaStreamsReference {

    /** Wires a scenario's topology into the builder; returns how to print an output record's key as JSON fields. */
    interface ScenarioType {
        Output build(StreamsBuilder builder, Map<String, Object> scenario);
    }

    /** What a builder wrote to "out": keys and values are strings holding JSON (so any builder can use them). */
    interface Output {
        String fields(String key, String value);
    }

    static final Map<String, ScenarioType> TYPES = new LinkedHashMap<>();
    static {
        TYPES.put("windowed-aggregation", KafkaStreamsReference::windowedAggregation);
        TYPES.put("join", KafkaStreamsReference::join);
    }

    // ---- windowed aggregation: in -> groupByKey -> windowedBy -> count|reduce|aggregate [-> suppress] -> out ----

    static Output windowedAggregation(StreamsBuilder builder, Map<String, Object> scenario) {
        Map<String, Object> window = Json.object(scenario.get("window"));
        String kind = Json.string(window.get("kind"));
        String aggregation = Json.string(scenario.getOrDefault("aggregation", "count"));
        String emit = Json.string(scenario.getOrDefault("emit", "all"));
        Duration grace = Duration.ofMillis(Json.longValue(window.getOrDefault("grace", 0L)));
        KStream<String, Long> input = builder.stream("in", Consumed.with(Serdes.String(), Serdes.Long()));
        if (scenario.containsKey("min_value")) {
            // An upstream filter: shows which records the windows' stream time comes from.
            long min = Json.longValue(scenario.get("min_value"));
            input = input.filter((k, v) -> v != null && v >= min);
        }
        KGroupedStream<String, Long> grouped = input.groupByKey(Grouped.with(Serdes.String(), Serdes.Long()));
        KTable<Windowed<String>, Long> table;
        switch (kind) {
            case "tumbling":
            case "hopping": {
                Duration size = Duration.ofMillis(Json.longValue(window.get("size")));
                TimeWindows windows = TimeWindows.ofSizeAndGrace(size, grace);
                if (kind.equals("hopping")) {
                    windows = windows.advanceBy(Duration.ofMillis(Json.longValue(window.get("advance"))));
                }
                var windowed = grouped.windowedBy(windows);
                Materialized<String, Long, WindowStore<Bytes, byte[]>> store =
                    Materialized.with(Serdes.String(), Serdes.Long());
                table = switch (aggregation) {
                    case "count" -> windowed.count(store);
                    case "reduce" -> windowed.reduce(Long::sum, store);
                    case "aggregate" -> windowed.aggregate(() -> 0L, (k, v, agg) -> agg + v, store);
                    default -> throw new IllegalArgumentException("unknown aggregation " + aggregation);
                };
                break;
            }
            case "sliding": {
                Duration difference = Duration.ofMillis(Json.longValue(window.get("time_difference")));
                var windowed = grouped.windowedBy(SlidingWindows.ofTimeDifferenceAndGrace(difference, grace));
                Materialized<String, Long, WindowStore<Bytes, byte[]>> store =
                    Materialized.with(Serdes.String(), Serdes.Long());
                table = switch (aggregation) {
                    case "count" -> windowed.count(store);
                    case "reduce" -> windowed.reduce(Long::sum, store);
                    case "aggregate" -> windowed.aggregate(() -> 0L, (k, v, agg) -> agg + v, store);
                    default -> throw new IllegalArgumentException("unknown aggregation " + aggregation);
                };
                break;
            }
            case "session": {
                Duration gap = Duration.ofMillis(Json.longValue(window.get("inactivity_gap")));
                var windowed = grouped.windowedBy(SessionWindows.ofInactivityGapAndGrace(gap, grace));
                Materialized<String, Long, SessionStore<Bytes, byte[]>> store =
                    Materialized.with(Serdes.String(), Serdes.Long());
                table = switch (aggregation) {
                    case "count" -> windowed.count(store);
                    case "reduce" -> windowed.reduce(Long::sum, store);
                    case "aggregate" -> windowed.aggregate(() -> 0L, (k, v, agg) -> agg + v,
                                                           (k, a, b) -> a + b, store);
                    default -> throw new IllegalArgumentException("unknown aggregation " + aggregation);
                };
                break;
            }
            default:
                throw new IllegalArgumentException("unknown window kind " + kind);
        }
        if (emit.equals("final")) {
            table = table.suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()));
        } else if (!emit.equals("all")) {
            throw new IllegalArgumentException("unknown emit " + emit);
        }
        table.toStream()
            .map((wk, v) -> KeyValue.pair(
                "\"key\": " + Json.quote(wk.key()) + ", \"start\": " + wk.window().start()
                    + ", \"end\": " + wk.window().end(),
                v == null ? "null" : Long.toString(v)))
            .to("out", Produced.with(Serdes.String(), Serdes.String()));
        return (key, value) -> key + ", \"value\": " + value;
    }

    // ---- joins: topic "left" with topic "right" -> out ----
    //
    // "kind": "stream-stream" ("window": {"before", "after", "grace"} in ms), "stream-table", "table-table", "fk"
    // (foreign-key table-table join: a left value v refers to the right key "r" + v / 1000) or "stream-globaltable"
    // (the global table's key is "r" + v / 1000 of the stream's value v); "join": "inner", "left" or "outer" (where
    // the kind has it).
    // "stream-joined-table" joins topic "stream" (inner or left) with the table-table join "table_join" ("inner",
    // "left", "outer", "fk-inner" or "fk-left") of "left" and "right", whose "l|r" values it joins as "s|l|r".
    // "versioned": {"history": ms} puts the tables (of stream-table, table-table and fk joins) in versioned stores;
    // "min_value": N joins those tables filtered to their rows with values >= N (stream-stream: both streams
    // filtered to their records with values >= N, None values dropped); {"left": N, "right": M} filters each
    // side with its own minimum (or not, if it has none).
    // Keys are strings and values longs on both sides; the output is (key, joiner(l, r)) with the joiner writing
    // "l|r" ("null" for a missing side), or a null value where a table join deletes its result.

    static Output join(StreamsBuilder builder, Map<String, Object> scenario) {
        String kind = Json.string(scenario.get("kind"));
        String join = Json.string(scenario.getOrDefault("join", "inner"));
        ValueJoiner<Long, Long, String> joiner =
            (l, r) -> (l == null ? "null" : l.toString()) + "|" + (r == null ? "null" : r.toString());
        Consumed<String, Long> consumed = Consumed.with(Serdes.String(), Serdes.Long());
        KStream<String, String> out;
        switch (kind) {
            case "stream-stream": {
                Map<String, Object> window = Json.object(scenario.get("window"));
                JoinWindows windows = JoinWindows
                    .ofTimeDifferenceAndGrace(Duration.ofMillis(Json.longValue(window.get("before"))),
                                               Duration.ofMillis(Json.longValue(window.getOrDefault("grace", 0L))))
                    .after(Duration.ofMillis(Json.longValue(window.get("after"))));
                KStream<String, Long> left = builder.stream("left", consumed);
                KStream<String, Long> right = builder.stream("right", consumed);
                // Filtered streams: the join's stream time only sees the records that reach it.
                Long leftMin = minValue(scenario, "left"), rightMin = minValue(scenario, "right");
                if (leftMin != null) left = left.filter((k, v) -> v != null && v >= leftMin);
                if (rightMin != null) right = right.filter((k, v) -> v != null && v >= rightMin);
                StreamJoined<String, Long, Long> serdes =
                    StreamJoined.with(Serdes.String(), Serdes.Long(), Serdes.Long());
                out = switch (join) {
                    case "inner" -> left.join(right, joiner, windows, serdes);
                    case "left" -> left.leftJoin(right, joiner, windows, serdes);
                    case "outer" -> left.outerJoin(right, joiner, windows, serdes);
                    default -> throw new IllegalArgumentException("unknown join " + join);
                };
                break;
            }
            case "stream-table": {
                KStream<String, Long> left = builder.stream("left", consumed);
                KTable<String, Long> right = table(builder, "right", scenario);
                Joined<String, Long, Long> serdes = Joined.with(Serdes.String(), Serdes.Long(), Serdes.Long());
                out = switch (join) {
                    case "inner" -> left.join(right, joiner, serdes);
                    case "left" -> left.leftJoin(right, joiner, serdes);
                    default -> throw new IllegalArgumentException("a stream-table join is inner or left, not " + join);
                };
                break;
            }
            case "table-table": {
                KTable<String, Long> left = table(builder, "left", scenario);
                KTable<String, Long> right = table(builder, "right", scenario);
                KTable<String, String> joined = switch (join) {
                    case "inner" -> left.join(right, joiner);
                    case "left" -> left.leftJoin(right, joiner);
                    case "outer" -> left.outerJoin(right, joiner);
                    default -> throw new IllegalArgumentException("unknown join " + join);
                };
                out = joined.toStream();
                break;
            }
            case "fk": {
                KTable<String, Long> left = table(builder, "left", scenario);
                KTable<String, Long> right = table(builder, "right", scenario);
                // Kafka Streams never hands the extractor a deleted (null) left value.
                Function<Long, String> foreignKey = v -> "r" + (v / 1000);
                KTable<String, String> joined = switch (join) {
                    case "inner" -> left.join(right, foreignKey, joiner);
                    case "left" -> left.leftJoin(right, foreignKey, joiner);
                    default -> throw new IllegalArgumentException("a foreign-key join is inner or left, not " + join);
                };
                out = joined.toStream();
                break;
            }
            case "stream-joined-table": {
                // A stream ("stream") joined with the result of a table-table join of "left" and "right": looks
                // the join result up (Kafka Streams computes it from both tables) instead of reading a topic.
                KTable<String, Long> left = table(builder, "left", scenario);
                KTable<String, Long> right = table(builder, "right", scenario);
                String tableJoin = Json.string(scenario.get("table_join"));
                Function<Long, String> foreignKey = v -> "r" + (v / 1000);
                Materialized<String, String, KeyValueStore<Bytes, byte[]>> resultStore =
                    Materialized.with(Serdes.String(), Serdes.String());
                KTable<String, String> joined = switch (tableJoin) {
                    case "inner" -> left.join(right, joiner);
                    case "left" -> left.leftJoin(right, joiner);
                    case "outer" -> left.outerJoin(right, joiner);
                    // The stream join reads the foreign-key join's result from a store: it needs the serdes.
                    case "fk-inner" -> left.join(right, foreignKey, joiner, resultStore);
                    case "fk-left" -> left.leftJoin(right, foreignKey, joiner, resultStore);
                    default -> throw new IllegalArgumentException("unknown table_join " + tableJoin);
                };
                KStream<String, Long> stream = builder.stream("stream", consumed);
                ValueJoiner<Long, String, String> outerJoiner =
                    (l, r) -> (l == null ? "null" : l.toString()) + "|" + (r == null ? "null" : r);
                Joined<String, Long, String> serdes = Joined.with(Serdes.String(), Serdes.Long(), Serdes.String());
                out = switch (join) {
                    case "inner" -> stream.join(joined, outerJoiner, serdes);
                    case "left" -> stream.leftJoin(joined, outerJoiner, serdes);
                    default -> throw new IllegalArgumentException("a stream-table join is inner or left, not " + join);
                };
                break;
            }
            case "stream-globaltable": {
                KStream<String, Long> left = builder.stream("left", consumed);
                GlobalKTable<String, Long> right = builder.globalTable("right", consumed);
                // Kafka Streams calls the key selector before it drops a record with a null value: null in, null out.
                KeyValueMapper<String, Long, String> key = (k, v) -> v == null ? null : "r" + (v / 1000);
                out = switch (join) {
                    case "inner" -> left.join(right, key, joiner);
                    case "left" -> left.leftJoin(right, key, joiner);
                    default -> throw new IllegalArgumentException(
                        "a stream-global table join is inner or left, not " + join);
                };
                break;
            }
            default:
                throw new IllegalArgumentException("unknown join kind " + kind);
        }
        out.to("out", Produced.with(Serdes.String(), Serdes.String()));
        return (key, value) -> "\"key\": " + Json.quote(key) + ", \"value\": " + Json.quote(value);
    }

    /** The table over `topic`, in a key-value store, or a versioned one when the scenario says "versioned";
     *  with "min_value": N, only its rows with values >= N (KTable.filter). */
    static KTable<String, Long> table(StreamsBuilder builder, String topic, Map<String, Object> scenario) {
        Materialized<String, Long, KeyValueStore<Bytes, byte[]>> store;
        if (scenario.get("versioned") != null) {
            long history = Json.longValue(Json.object(scenario.get("versioned")).get("history"));
            store = Materialized.as(Stores.persistentVersionedKeyValueStore(topic + "-table",
                                                                            Duration.ofMillis(history)));
        } else {
            store = Materialized.as(topic + "-table");
        }
        KTable<String, Long> table = builder.table(topic, Consumed.with(Serdes.String(), Serdes.Long()),
                                                   store.withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()));
        Long min = minValue(scenario, topic);
        if (min != null) {
            // A filtered table: a row below the minimum is a deletion downstream (and not there for lookups).
            table = table.filter((k, v) -> v >= min);
        }
        return table;
    }

    /** The scenario's "min_value" for `topic`: N for every topic, or {"left": N, "right": M}; null: no filter. */
    static Long minValue(Map<String, Object> scenario, String topic) {
        Object min = scenario.get("min_value");
        if (min instanceof Map) min = Json.object(min).get(topic);
        return min == null ? null : Json.longValue(min);
    }

    // ---- the driver loop ----

    static List<String> run(Map<String, Object> scenario, Path stateDir) {
        String type = Json.string(scenario.getOrDefault("type", "windowed-aggregation"));
        ScenarioType builderOf = TYPES.get(type);
        if (builderOf == null) throw new IllegalArgumentException("unknown scenario type " + type);
        StreamsBuilder builder = new StreamsBuilder();
        Output output = builderOf.build(builder, scenario);
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "reference");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        // Every update reaches the output (no record cache between the aggregation and its downstream).
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        // Left/outer stream-stream joins look for expired unmatched records at most once per second of wall-clock
        // time (a throttle, not semantics), and the test driver's wall clock stands still: look at every record.
        props.put(StreamsConfig.InternalConfig.EMIT_INTERVAL_MS_KSTREAMS_OUTER_JOIN_SPURIOUS_RESULTS_FIX, 0L);
        List<String> lines = new ArrayList<>();
        try (TopologyTestDriver driver = new TopologyTestDriver(builder.build(), props)) {
            Map<String, TestInputTopic<String, Long>> inputs = new LinkedHashMap<>();
            for (Object r : Json.array(scenario.get("records"))) {
                List<Object> rec = Json.array(r);
                int i = rec.size() == 4 ? 1 : 0;
                if (rec.size() != 3 && rec.size() != 4) throw new IllegalArgumentException("bad record " + rec);
                String topic = i == 1 ? Json.string(rec.get(0)) : "in";
                TestInputTopic<String, Long> in = inputs.computeIfAbsent(topic, t ->
                    driver.createInputTopic(t, new StringSerializer(), new LongSerializer()));
                Object value = rec.get(i + 1);
                in.pipeInput((String) rec.get(i), value == null ? null : Json.longValue(value),
                             Json.longValue(rec.get(i + 2)));
            }
            TestOutputTopic<String, String> out =
                driver.createOutputTopic("out", new StringDeserializer(), new StringDeserializer());
            for (TestRecord<String, String> rec : out.readRecordsToList()) {
                lines.add("{" + output.fields(rec.key(), rec.value()) + ", \"timestamp\": " + rec.timestamp() + "}");
            }
        }
        return lines;
    }

    public static void main(String[] args) throws IOException {
        PrintStream stdout = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        BufferedReader in = args.length > 0
            ? new BufferedReader(new FileReader(args[0], StandardCharsets.UTF_8))
            : new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        // RocksDB flushes at every commit, and the test driver commits after every record: keep it off the disk.
        Path shm = Path.of("/dev/shm");
        Path stateDir = Files.isDirectory(shm) && Files.isWritable(shm)
            ? Files.createTempDirectory(shm, "kstreams-reference") : Files.createTempDirectory("kstreams-reference");
        try {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isBlank()) continue;
                List<String> lines;
                try {
                    lines = run(Json.object(Json.parse(line)), stateDir);
                } catch (Exception e) {
                    stdout.println("{\"error\": " + Json.quote(e.toString()) + "}");
                    stdout.println("{\"done\": 0}");
                    stdout.flush();
                    continue;
                }
                for (String l : lines) stdout.println(l);
                stdout.println("{\"done\": " + lines.size() + "}");
                stdout.flush();
            }
        } finally {
            deleteTree(stateDir.toFile());
        }
    }

    static void deleteTree(File f) {
        File[] children = f.listFiles();
        if (children != null) for (File c : children) deleteTree(c);
        f.delete();
    }

    /** Just enough JSON: objects, arrays, strings, integers and decimals, true/false/null. */
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) { this.s = s; }

        static Object parse(String text) {
            Json p = new Json(text);
            Object v = p.value();
            p.ws();
            if (p.i != text.length()) throw p.error("trailing characters");
            return v;
        }

        @SuppressWarnings("unchecked")
        static Map<String, Object> object(Object o) {
            if (!(o instanceof Map)) throw new IllegalArgumentException("expected a JSON object, got " + o);
            return (Map<String, Object>) o;
        }

        @SuppressWarnings("unchecked")
        static List<Object> array(Object o) {
            if (!(o instanceof List)) throw new IllegalArgumentException("expected a JSON array, got " + o);
            return (List<Object>) o;
        }

        static String string(Object o) {
            if (!(o instanceof String)) throw new IllegalArgumentException("expected a JSON string, got " + o);
            return (String) o;
        }

        static long longValue(Object o) {
            if (!(o instanceof Long)) throw new IllegalArgumentException("expected an integer, got " + o);
            return (Long) o;
        }

        static String quote(String v) {
            if (v == null) return "null";
            StringBuilder b = new StringBuilder("\"");
            for (char c : v.toCharArray()) {
                switch (c) {
                    case '"' -> b.append("\\\"");
                    case '\\' -> b.append("\\\\");
                    case '\n' -> b.append("\\n");
                    case '\r' -> b.append("\\r");
                    case '\t' -> b.append("\\t");
                    default -> {
                        if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                        else b.append(c);
                    }
                }
            }
            return b.append('"').toString();
        }

        private IllegalArgumentException error(String what) {
            return new IllegalArgumentException("bad JSON at " + i + ": " + what);
        }

        private void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }

        private Object value() {
            ws();
            if (i >= s.length()) throw error("unexpected end");
            char c = s.charAt(i);
            if (c == '{') {
                i++;
                Map<String, Object> m = new LinkedHashMap<>();
                ws();
                if (s.charAt(i) == '}') { i++; return m; }
                while (true) {
                    ws();
                    if (s.charAt(i) != '"') throw error("expected a key");
                    String k = str();
                    ws();
                    if (s.charAt(i++) != ':') throw error("expected ':'");
                    m.put(k, value());
                    ws();
                    char d = s.charAt(i++);
                    if (d == '}') return m;
                    if (d != ',') throw error("expected ',' or '}'");
                }
            }
            if (c == '[') {
                i++;
                List<Object> l = new ArrayList<>();
                ws();
                if (s.charAt(i) == ']') { i++; return l; }
                while (true) {
                    l.add(value());
                    ws();
                    char d = s.charAt(i++);
                    if (d == ']') return l;
                    if (d != ',') throw error("expected ',' or ']'");
                }
            }
            if (c == '"') return str();
            if (s.startsWith("true", i)) { i += 4; return Boolean.TRUE; }
            if (s.startsWith("false", i)) { i += 5; return Boolean.FALSE; }
            if (s.startsWith("null", i)) { i += 4; return null; }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            String num = s.substring(start, i);
            if (num.isEmpty()) throw error("unexpected character " + c);
            if (num.matches("-?\\d+")) return Long.parseLong(num);
            return Double.parseDouble(num);
        }

        private String str() {
            i++;  // opening quote
            StringBuilder b = new StringBuilder();
            while (true) {
                if (i >= s.length()) throw error("unterminated string");
                char c = s.charAt(i++);
                if (c == '"') return b.toString();
                if (c != '\\') { b.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case '"', '\\', '/' -> b.append(e);
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'n' -> b.append('\n');
                    case 'r' -> b.append('\r');
                    case 't' -> b.append('\t');
                    case 'u' -> { b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; }
                    default -> throw error("bad escape \\" + e);
                }
            }
        }
    }
}
