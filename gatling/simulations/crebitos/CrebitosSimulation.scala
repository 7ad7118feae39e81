package crebitos

import scala.concurrent.duration._
import scala.util.Random

import io.gatling.core.Predef._
import io.gatling.core.controller.inject.open.OpenInjectionStep
import io.gatling.http.Predef._
import io.gatling.http.check.HttpCheck
import io.gatling.http.response.Response

/** The reference load test of LOAD.md, written for this project (Gatling 3.10, Scala DSL).
  *
  * Phases, in order:
  *   1. 25 users at once debit 1 from account 1 (each 200), then one statement: total exactly -25.
  *   2. 25 users at once credit 1 (each 200), then one statement: total exactly 0.
  *   3. In parallel: the validation chain of each account 1..5, and one statement of account 6
  *      that must answer 404; after that 404 the load phase starts.
  *   4. Load: debits (peak 220/s), credits (110/s) and statements (10/s), each an open-model rate
  *      ramping from 1 user/s to its peak over RINHA_RAMP_SECONDS (default 120), then holding the
  *      peak for RINHA_HOLD_SECONDS (default 120).
  *
  * Every virtual user has its own connections and ends after its requests, so every load request
  * arrives on a new TCP connection. The Rust twin of this file is crates/scenario (rinha-scenario):
  * keep the two in step.
  */
class CrebitosSimulation extends Simulation {

  private val target = sys.env.getOrElse("RINHA_TARGET", "http://localhost:9999")
  private val ramp = sys.env.getOrElse("RINHA_RAMP_SECONDS", "120").toInt.seconds
  private val hold = sys.env.getOrElse("RINHA_HOLD_SECONDS", "120").toInt.seconds

  private val httpProtocol = http
    .baseUrl(target)
    .userAgentHeader("Agente do Caos - 2024/Q1")

  /** The five accounts and their limits (API.md). */
  private val accounts = Seq(1 -> 100000, 2 -> 80000, 3 -> 1000000, 4 -> 10000000, 5 -> 500000)

  private def randomAccount(): Int = 1 + Random.nextInt(accounts.size)
  private def randomValue(): Int = 1 + Random.nextInt(10000)
  private def randomDescription(): String = Random.alphanumeric.take(10).mkString

  private def transaction(name: String, body: String) =
    http(name)
      .post("/clientes/#{id}/transacoes")
      .header("content-type", "application/json")
      .body(StringBody(body))

  private def statement(name: String) = http(name).get("/clientes/#{id}/extrato")

  /** The consistency check: the object at `path` has `balanceKey >= -limite`. Balance and limit
    * are read from the same answer in one check, so it depends on nothing saved before.
    */
  private def withinLimit(path: String, balanceKey: String): HttpCheck =
    jsonPath(path)
      .ofType[Map[String, Any]]
      .transform(json => json(balanceKey).toString.toLong >= -json("limite").toString.toLong)
      .is(true)

  // Phases 1 and 2.

  private def concurrentTransactions(kind: String) =
    scenario(s"validations: 25 concurrent '$kind'")
      .exec(session => session.set("id", 1))
      .exec(
        transaction("validations", s"""{"valor": 1, "tipo": "$kind", "descricao": "validacao"}""")
          .check(status.is(200))
      )

  private def totalIs(expected: Int) =
    scenario(s"validations: total is $expected")
      .exec(session => session.set("id", 1))
      .exec(statement("validations").check(jsonPath("$.saldo.total").ofType[Int].is(expected)))

  // Phase 3.

  private val accountFeeder =
    accounts.map { case (id, limit) => Map[String, Any]("id" -> id, "limite" -> limit) }.toArray.queue

  private def latest(index: Int, description: String, kind: String): Seq[HttpCheck] = Seq(
    jsonPath(s"$$.ultimas_transacoes[$index].descricao").is(description),
    jsonPath(s"$$.ultimas_transacoes[$index].tipo").is(kind),
    jsonPath(s"$$.ultimas_transacoes[$index].valor").ofType[Int].is(1)
  )

  private val invalidBodies = Seq(
    """{"valor": 1.2, "tipo": "d", "descricao": "devolve"}""",
    """{"valor": 1, "tipo": "x", "descricao": "devolve"}""",
    """{"valor": 1, "tipo": "c", "descricao": "123456789 e mais um pouco"}""",
    """{"valor": 1, "tipo": "c", "descricao": ""}""",
    """{"valor": 1, "tipo": "c", "descricao": null}"""
  )

  private val validationSteps = scenario("validations: chain per account")
    .feed(accountFeeder)
    .exec(
      statement("validations").check(
        jsonPath("$.saldo.limite").ofType[Int].is(session => session("limite").validate[Int]),
        jsonPath("$.saldo.total").ofType[Int].is(0)
      )
    )
    .exec(transaction("validations", """{"valor": 1, "tipo": "c", "descricao": "toma"}""").check(status.is(200)))
    .exec(transaction("validations", """{"valor": 1, "tipo": "d", "descricao": "devolve"}""").check(status.is(200)))
    .exec(statement("validations").check(latest(0, "devolve", "d") ++ latest(1, "toma", "c"): _*))
    .exec(
      // The resources are fetched concurrently once the credit has answered, with the balance
      // and limit it returned saved in the session.
      transaction("validations", """{"valor": 1, "tipo": "c", "descricao": "danada"}""")
        .check(
          status.is(200),
          jsonPath("$.saldo").ofType[Int].saveAs("saldo"),
          jsonPath("$.limite").ofType[Int].saveAs("limite")
        )
        .resources(
          (1 to 4).map { _ =>
            statement("validations").check(
              latest(0, "danada", "c") ++ Seq[HttpCheck](
                jsonPath("$.saldo.limite").ofType[Int].is(session => session("limite").validate[Int]),
                jsonPath("$.saldo.total").ofType[Int].is(session => session("saldo").validate[Int])
              ): _*
            )
          }: _*
        )
    )

  private val validationChain = invalidBodies.foldLeft(validationSteps) { (chain, body) =>
    chain.exec(transaction("validations", body).check(status.in(422, 400)))
  }

  private val notFound = scenario("not found")
    .exec(session => session.set("id", 6))
    .exec(statement("not found").check(status.is(404)))

  // Phase 4.

  private def randomTransaction(name: String, kind: String, allowed: Seq[Int]) =
    scenario(name)
      .exec(session => session.set("id", randomAccount()))
      .exec(
        http(name)
          .post("/clientes/#{id}/transacoes")
          .header("content-type", "application/json")
          .body(StringBody(_ => s"""{"valor": ${randomValue()}, "tipo": "$kind", "descricao": "${randomDescription()}"}"""))
          .check(status.in(allowed: _*))
          .checkIf((response: Response, _: Session) => response.status.code == 200)(
            withinLimit("$", "saldo")
          )
      )

  private val debits = randomTransaction("debits", "d", Seq(200, 422))
  private val credits = randomTransaction("credits", "c", Seq(200))

  private val statements = scenario("statements")
    .exec(session => session.set("id", randomAccount()))
    .exec(statement("statements").check(withinLimit("$.saldo", "total")))

  private def load(peak: Int): Seq[OpenInjectionStep] = Seq(
    rampUsersPerSec(1).to(peak).during(ramp),
    constantUsersPerSec(peak).during(hold)
  )

  setUp(
    concurrentTransactions("d").inject(atOnceUsers(25)).andThen(
      totalIs(-25).inject(atOnceUsers(1)).andThen(
        concurrentTransactions("c").inject(atOnceUsers(25)).andThen(
          totalIs(0).inject(atOnceUsers(1)).andThen(
            validationChain.inject(atOnceUsers(accounts.size)),
            notFound.inject(atOnceUsers(1)).andThen(
              debits.inject(load(220)),
              credits.inject(load(110)),
              statements.inject(load(10))
            )
          )
        )
      )
    )
  ).protocols(httpProtocol)
}
