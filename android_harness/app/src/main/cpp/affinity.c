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
