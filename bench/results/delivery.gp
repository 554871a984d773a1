# gnuplot /work/main/bench/results/delivery.gp (written by bench/run_bench.sh)
set terminal pngcairo size 800,500 font ",10" noenhanced
set datafile missing "?"
set logscale xy
set xrange [62.5:160]
set xlabel "subscribers"
set grid
set key top left
set xtics (1, 10, 100, 1000, 10000)
set format y "%.0s%c"
set output "/work/main/bench/results/delivery_msgs_per_s.png"
set title "pg_ws: delivered messages/s (2 CPUs, loopback, pg_ws.so 7e91bf0ab1ff)"
set ylabel "delivered msgs/s"
plot "/work/main/bench/results/delivery.dat" using 1:(column(2)) with linespoints title "ws://, 1000 events/s", 2000000 with lines dt 2 lc "gray" title "target: 2M msgs/s (100-row transactions)"
set output "/work/main/bench/results/delivery_p99.png"
set title "pg_ws: p99 commit-to-receive latency (2 CPUs, loopback, pg_ws.so 7e91bf0ab1ff)"
set ylabel "p99 latency (ms)"
set format y "%g"
set yrange [0.1:*]
plot "/work/main/bench/results/delivery.dat" using 1:(column(4)/1000) with linespoints title "ws://, 1000 events/s", 1 with lines dt 2 lc "gray" title "target: 1 ms (1 000 events/s to 100)"
