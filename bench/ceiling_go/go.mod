module conductor-worker-operator/bench/ceiling_go

go 1.22
