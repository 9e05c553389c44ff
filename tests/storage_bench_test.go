package tests

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/stateful-conformance/stateful-conformance/pkg/cluster"
	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
)

// BenchmarkClaimToBound measures a claim on the default class from Create to
// Bound (provisioned by csi-provisioner and the hostpath plugin), waited on
// a watch; it reports the median and the 90th percentile.
//
//	go test ./tests -run '^$' -bench ClaimToBound -benchtime 20x -args --kubeconfig=$(make -s kubeconfig)
func BenchmarkClaimToBound(b *testing.B) {
	ctx := context.Background()
	cs, err := cluster.Clientset(testenv.EnvConf().KubeconfigFile())
	if err != nil {
		b.Fatal(err)
	}
	ns := envconf.RandomName("bench", 12)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	defer cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	var took []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("claim-%d", i)
		start := time.Now()
		if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim(name, "1Gi", corev1.ReadWriteOnce), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		wait, cancel := context.WithTimeout(ctx, time.Minute)
		err := kube.WaitForPVC(wait, cs, ns, name, kube.PVCBound)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(took[len(took)*9/10].Milliseconds()), "p90-ms")
}
