// The e2e workload container (see main.go). No dependencies.
module kaisched/e2e/kind/workload

go 1.22
