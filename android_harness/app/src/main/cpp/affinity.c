// Pins the calling thread to a set of CPUs. Threads created afterwards inherit the
// mask, so pinning before the Interpreter is built keeps XNNPACK's pthreadpool
// workers on the chosen (big) cores as well.
#define _GNU_SOURCE
#include <errno.h>
#include <jni.h>
#include <sched.h>

JNIEXPORT jint JNICALL
Java_com_vitdeploy_harness_CpuAffinity_nativeSetAffinity(JNIEnv *env, jclass clazz, jintArray cpus) {
    (void) clazz;
    cpu_set_t set;
    CPU_ZERO(&set);
    jsize n = (*env)->GetArrayLength(env, cpus);
    jint *ids = (*env)->GetIntArrayElements(env, cpus, NULL);
    if (ids == NULL) return ENOMEM;
    for (jsize i = 0; i < n; i++) {
        if (ids[i] >= 0 && ids[i] < CPU_SETSIZE) CPU_SET(ids[i], &set);
    }
    (*env)->ReleaseIntArrayElements(env, cpus, ids, JNI_ABORT);
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : errno;
}

// The calling thread's current mask, so the result can show what pinning really achieved.
JNIEXPORT jintArray JNICALL
Java_com_vitdeploy_harness_CpuAffinity_nativeGetAffinity(JNIEnv *env, jclass clazz) {
    (void) clazz;
    cpu_set_t set;
    CPU_ZERO(&set);
    jint ids[CPU_SETSIZE];
    jsize n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
            if (CPU_ISSET(cpu, &set)) ids[n++] = cpu;
        }
    }
    jintArray out = (*env)->NewIntArray(env, n);
    if (out != NULL) (*env)->SetIntArrayRegion(env, out, 0, n, ids);
    return out;
}
