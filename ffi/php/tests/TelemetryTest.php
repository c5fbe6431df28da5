<?php

declare(strict_types=1);

namespace Ringkv\Tests;

/**
 * The production pattern: hosts push metric samples into telemetry:<host>
 * hashes (one HSET per host per tick), a consumer drains them with HDRAIN in
 * batches of 500 while ingest goes on, then drains whatever is left. Every
 * field must be consumed exactly once.
 */
final class TelemetryTest extends TestCase
{
    private const HOSTS = 32;
    private const TICKS = 100;
    private const METRICS = ['cpu', 'mem', 'disk', 'net_in', 'net_out', 'load1', 'load5', 'iops', 'temp', 'fds'];

    public function testIngestAndDrainConsumesEveryFieldOnce(): void
    {
        $e = $this->engine();
        mt_srand(20240501);
        $expectedCount = [];
        $expectedSum = [];
        $consumed = []; // field id => true
        $consumedCount = [];
        $consumedSum = [];
        $batchSizes = [];

        $consume = function (string $key, array $batch) use (&$consumed, &$consumedCount, &$consumedSum, &$batchSizes): void {
            $batchSizes[] = count($batch);
            foreach ($batch as $field => $value) {
                $id = $key . '|' . $field;
                $this->assertArrayNotHasKey($id, $consumed, "field {$id} consumed twice");
                $consumed[$id] = true;
                $consumedCount[$key] = ($consumedCount[$key] ?? 0) + 1;
                $consumedSum[$key] = ($consumedSum[$key] ?? 0) + (int) $value;
            }
        };

        for ($tick = 0; $tick < self::TICKS; $tick++) {
            for ($h = 0; $h < self::HOSTS; $h++) {
                $key = sprintf('telemetry:host-%03d', $h);
                $fields = [];
                foreach (self::METRICS as $metric) {
                    $value = mt_rand(0, 1_000_000);
                    $fields["{$metric}:{$tick}"] = (string) $value;
                    $expectedSum[$key] = ($expectedSum[$key] ?? 0) + $value;
                }
                $this->assertSame(count(self::METRICS), $e->hSet($key, $fields));
                $expectedCount[$key] = ($expectedCount[$key] ?? 0) + count(self::METRICS);
            }
            // Every 30 ticks the consumer takes one batch from a few hosts while ingest goes on.
            if ($tick % 30 === 29) {
                for ($h = $tick % 4; $h < self::HOSTS; $h += 4) {
                    $key = sprintf('telemetry:host-%03d', $h);
                    $consume($key, $e->hDrain($key, 500));
                }
            }
        }
        $e->set('unrelated', 'x');
        $e->hSet('config:hosts', ['count' => (string) self::HOSTS]);

        $total = array_sum($expectedCount);
        $this->assertSame(self::HOSTS * self::TICKS * count(self::METRICS), $total);

        // The drain loop: find the telemetry hashes, drain each until empty.
        $keys = array_values(array_unique(iterator_to_array($e->scan('telemetry:*', 100, 'hash'), false)));
        $this->assertCount(self::HOSTS, $keys);
        foreach ($keys as $key) {
            foreach ($e->drain($key, 500) as $batch) {
                $this->assertLessThanOrEqual(500, count($batch));
                $this->assertNotEmpty($batch);
                $consume($key, $batch);
            }
            $this->assertSame(0, $e->exists($key));
        }

        $this->assertCount($total, $consumed);
        ksort($expectedCount);
        ksort($consumedCount);
        ksort($expectedSum);
        ksort($consumedSum);
        $this->assertSame($expectedCount, $consumedCount);
        $this->assertSame($expectedSum, $consumedSum);
        $this->assertSame(500, max($batchSizes));
        $this->assertSame([], iterator_to_array($e->scan('telemetry:*'), false));
        $this->assertSame(2, $e->dbSize());
        $this->assertSame('x', $e->get('unrelated'));
        $stats = $e->stats();
        $this->assertSame(2, $stats['keys']);
        $this->assertArrayHasKey('commands', $stats);
    }
}
