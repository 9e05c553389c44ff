package manifest

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const workloads = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ns}
spec:
  template:
    spec:
      initContainers: [{name: init, image: busybox:1}]
      containers: [{name: app, image: app:1}, {name: side, image: side:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
spec:
  containers: [{name: c, image: app:1}]
`

func TestSetImages(t *testing.T) {
	objs, err := Decode([]byte(workloads))
	require.NoError(t, err)
	assert.Equal(t, []string{"app:1", "side:1", "busybox:1"}, Images(objs[0]))
	require.NoError(t, SetImages(objs, map[string]string{"app:1": "local/app:abc", "busybox:1": "local/busybox:def"}))
	assert.Equal(t, []string{"local/app:abc", "side:1", "local/busybox:def"}, Images(objs[0]))
	assert.Equal(t, []string{"local/app:abc"}, Images(objs[1]), "pods too")
	assert.ErrorContains(t, SetImages(objs, map[string]string{"gone:1": "x"}), "no container uses image gone:1")
}

func TestOverlayReplacesAndAdds(t *testing.T) {
	base, err := ReadDir("../../manifests/lab")
	require.NoError(t, err)
	over, err := ReadDir("../../manifests/lab-upstream")
	require.NoError(t, err)
	index := map[string][]string{}
	for _, o := range over {
		index[identity(o)] = Images(o)
	}
	assert.Equal(t, []string{"quay.io/ifont/pacman-nodejs-app:latest"}, index["Deployment.apps/pacman/pacman"], "replaced")
	assert.Contains(t, index, "Job.batch/pacman/mongo-rs-init", "added")
	assert.Contains(t, index, "Ingress.networking.k8s.io/pacman/pacman-ingress", "kept from the base")
	assert.Len(t, over, len(base)+2, "a Secret and a Job added, the rest replaced or kept")
}

// Numbers must come out as int64, as the API machinery decodes them: the
// suite reads spec.replicas with NestedInt64, which refuses float64.
func TestDecodeNumbersAreIntegers(t *testing.T) {
	objs, err := Decode([]byte("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: mongo}\nspec: {replicas: 2}\n"))
	require.NoError(t, err)
	replicas, found, err := unstructured.NestedInt64(objs[0].Object, "spec", "replicas")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, int64(2), replicas)
}

func TestDecodeRefusesObjectsWithoutKind(t *testing.T) {
	_, err := Decode([]byte("apiVersion: v1\nmetadata: {name: nameless}\n"))
	assert.ErrorContains(t, err, `object "nameless" has no kind or apiVersion`)
}
