package com.vitdeploy.harness

import java.io.File

/**
 * CPU topology and thread pinning. Lives in the app (not the test APK) so that
 * System.loadLibrary resolves against the app's own native library directory.
 */
object CpuAffinity {
    init {
        System.loadLibrary("vitdeploy_affinity")
    }

    @JvmStatic
    private external fun nativeSetAffinity(cpus: IntArray): Int

    @JvmStatic
    private external fun nativeGetAffinity(): IntArray

    /** Max frequency in kHz per CPU index, from sysfs; 0 where the kernel hides it. */
    fun maxFrequenciesKhz(): List<Long> {
        val n = Runtime.getRuntime().availableProcessors()
        val present = File("/sys/devices/system/cpu").listFiles { f -> f.name.matches(Regex("cpu\\d+")) }
            ?.size ?: n
        return (0 until maxOf(n, present)).map { cpu ->
            runCatching {
                File("/sys/devices/system/cpu/cpu$cpu/cpufreq/cpuinfo_max_freq").readText().trim().toLong()
            }.getOrDefault(0L)
        }
    }

    /** The `count` fastest CPUs (prime first, then big), ties broken by the higher index. */
    fun fastestCpus(count: Int): List<Int> {
        val freqs = maxFrequenciesKhz()
        return freqs.indices.sortedWith(compareByDescending<Int> { freqs[it] }.thenByDescending { it })
            .take(count.coerceIn(1, freqs.size))
    }

    /** Pin the calling thread (and threads it creates later) to `cpus`; returns an error text or null. */
    fun pin(cpus: List<Int>): String? {
        val err = nativeSetAffinity(cpus.toIntArray())
        return if (err == 0) null else "sched_setaffinity(${cpus.joinToString()}) failed: errno $err" +
            (if (err == 22) " (EINVAL: the app's cpuset excludes those CPUs)" else "")
    }

    /** The CPUs the calling thread may run on now (sched_getaffinity); empty if that call fails. */
    fun currentMask(): List<Int> = nativeGetAffinity().toList()

    /** Undo [pin]: allow every CPU again. */
    fun unpin() {
        nativeSetAffinity(maxFrequenciesKhz().indices.toList().toIntArray())
    }
}
